"use strict";
// The gateway's own OpenAPI document; "Try it out" sends the console's token (same tab, same sessionStorage).
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  requestInterceptor: (request) => {
    const token = sessionStorage.getItem("tfic-token");
    if (token && !request.headers.Authorization) request.headers.Authorization = "Bearer " + token;
    return request;
  },
});
