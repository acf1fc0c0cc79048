"""Just enough of Dockerfile and .dockerignore syntax to check what a build would copy and run.

`parse()` follows the Dockerfile reference: line continuations, comment lines (also inside a
continued instruction), stages started by FROM with optional `AS name`, and global ARG defaults
substituted into FROM. `DockerIgnore` follows BuildKit's pattern matcher (moby/patternmatcher):
patterns are cleaned paths relative to the context, `*` and `?` stay within one path segment,
`**` spans any number of them, a `!` line re-includes, the last matching line wins, and a
pattern that matches a directory matches everything under it.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    """One instruction: its keyword (upper case), the raw text after it, and its stage."""

    keyword: str
    text: str
    line: int
    stage: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form ENTRYPOINT/CMD/RUN, else None (shell form)."""
        try:
            value = json.loads(self.text)
        except json.JSONDecodeError:
            return None
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        return None


@dataclass(frozen=True)
class Copy:
    """A COPY/ADD: its flags (`--from=builder` -> {"from": "builder"}), sources and destination."""

    flags: dict[str, str]
    sources: list[str]
    dest: str
    stage: int


@dataclass
class Stage:
    """A build stage: its base image (ARGs substituted), its name, and its instructions."""

    index: int
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    stages: list[Stage]
    global_args: dict[str, str]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage_names(self) -> set[str]:
        return {s.name for s in self.stages if s.name}

    def copies(self) -> list[Copy]:
        out = []
        for stage in self.stages:
            for ins in stage.instructions:
                if ins.keyword in {"COPY", "ADD"}:
                    out.append(parse_copy(ins))
        return out

    def env(self, stage: Stage) -> dict[str, str]:
        """The ENV variables a stage sets (key=value form), in order, later ones winning."""
        values: dict[str, str] = {}
        for ins in stage.of("ENV"):
            for token in shlex.split(ins.text):
                key, sep, value = token.partition("=")
                if not sep:
                    raise ValueError(f"line {ins.line}: ENV in legacy `key value` form")
                values[key] = value
        return values


def _logical_lines(text: str) -> list[tuple[int, str]]:
    lines: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue  # a comment, also between the lines of a continued instruction
        if not current:
            if not stripped:
                continue
            start = number
        if stripped.endswith("\\"):
            current.append(stripped[:-1].strip())
            continue
        current.append(stripped)
        lines.append((start, " ".join(part for part in current if part)))
        current = []
    if current:
        lines.append((start, " ".join(current)))
    return lines


def _substitute(text: str, args: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return args.get(name, "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", value, text)


def parse(text: str) -> Dockerfile:
    stages: list[Stage] = []
    global_args: dict[str, str] = {}
    for line, logical in _logical_lines(text):
        keyword, _, rest = logical.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "ARG" and not stages:
            arg, _, default = rest.partition("=")
            global_args[arg] = default
            continue
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--platform")]
            base = _substitute(words[0], global_args)
            stage_name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(len(stages), base, stage_name))
            continue
        if not stages:
            raise ValueError(f"line {line}: {keyword} before the first FROM")
        stages[-1].instructions.append(Instruction(keyword, rest, line, len(stages) - 1))
    return Dockerfile(stages, global_args)


def parse_copy(ins: Instruction) -> Copy:
    form = ins.exec_form()
    words = form if form is not None else shlex.split(ins.text)
    flags: dict[str, str] = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    if len(words) < 2:
        raise ValueError(f"line {ins.line}: {ins.keyword} needs a source and a destination")
    return Copy(flags, words[:-1], words[-1], ins.stage)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if pattern[i + 1 : i + 2] == "*":
                i += 1
                if pattern[i + 1 : i + 2] == "/":
                    i += 1
                out.append(".*" if i + 1 == len(pattern) else "(.*/)?")
            else:
                out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif char == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    out.append("$")
    return re.compile("".join(out))


@dataclass(frozen=True)
class DockerIgnore:
    rules: tuple[tuple[bool, re.Pattern[str]], ...]  # (negated, pattern)

    @classmethod
    def parse(cls, text: str) -> DockerIgnore:
        rules = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            if negated:
                line = line[1:].strip()
            cleaned = posixpath.normpath(line).lstrip("/")
            rules.append((negated, _pattern_regex(cleaned)))
        return cls(tuple(rules))

    def excluded(self, path: str) -> bool:
        """Whether `path` (relative to the context, `/`-separated) stays out of the context."""
        parts = posixpath.normpath(path).split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for negated, regex in self.rules:
            if any(regex.match(candidate) for candidate in candidates):
                excluded = not negated
        return excluded


def context_files(root: Path, source: str) -> list[str]:
    """The files a COPY source names, relative to the context root (a directory: all under it)."""
    path = root / source
    if path.is_dir():
        return sorted(p.relative_to(root).as_posix() for p in path.rglob("*") if p.is_file())
    return [Path(source).as_posix()] if path.is_file() else []
