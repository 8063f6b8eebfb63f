// Start Swagger UI on the hub's OpenAPI schema (a file of its own: the CSP allows no inline script).
"use strict";
const root = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({ url: root.dataset.openapi, dom_id: "#swagger-ui" });
