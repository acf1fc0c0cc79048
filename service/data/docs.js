// Starts Swagger UI on this service's contract. A file of its own, not an inline script, so the
// page's Content-Security-Policy can allow scripts from this origin only. URLs are relative to
// the page, so the page also works behind a path prefix.
"use strict";
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: new URL("openapi.yaml", document.baseURI).href,
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    displayOperationId: true,
    // The badge would load an image from a public validator: nothing leaves this origin.
    validatorUrl: null,
  });
});
