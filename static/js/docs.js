// The API docs (/docs): start Swagger UI on the page's OpenAPI document, from the bundle in static/vendor/
// (no inline script, nothing from another server).
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  const swagger = document.querySelector("[data-viewer=swagger-ui]");
  if (swagger) {
    window.ui = SwaggerUIBundle({
      url: swagger.dataset.openapi,
      dom_id: "#swagger-ui",
      layout: "BaseLayout",
      deepLinking: true,
      showExtensions: true,
      showCommonExtensions: true,
      validatorUrl: null,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    });
  }
});
