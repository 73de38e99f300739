// The console's only script: picking an example loads its request into the text box, so it can be edited.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const example = document.getElementById("example");
  const text = document.getElementById("request_json");
  const service = document.getElementById("service");
  if (!example || !text || !service) return;
  example.addEventListener("change", async () => {
    if (!example.value) return;
    const url = example.dataset.examplesUrl + encodeURIComponent(example.value);
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const data = await response.json();
      text.value = JSON.stringify(data.request, null, 2);
      service.value = data.service;
    } catch (_) {
      // The server still evaluates the chosen example when the text box is left empty.
    }
  });
});
