"use strict";
(function () {
  const form = document.getElementById("ratings");
  if (!form) { return; }
  const counter = document.getElementById("rated-count");
  const saveStatus = document.getElementById("save-status");
  let queue = Promise.resolve();
  function send(id, value) {
    const body = JSON.stringify({ ratings: { [id]: value } });
    return fetch("draft", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: body,
    }).then(function (response) {
      return response.json().then(function (reply) {
        if (!response.ok) { throw new Error(reply.error || response.statusText); }
        counter.textContent = String(reply.rated);
        saveStatus.textContent = "";
      });
    }).catch(function (error) {
      saveStatus.textContent = "This rating was not saved as a draft (" + error.message +
        "); it is still sent when you submit.";
    });
  }
  form.addEventListener("change", function (event) {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== "radio") { return; }
    const fieldset = input.closest("fieldset");
    fieldset.classList.remove("missing");
    fieldset.removeAttribute("aria-invalid");
    counter.textContent = String(form.querySelectorAll("input[type=radio]:checked").length);
    queue = queue.then(function () { return send(fieldset.dataset.id, input.value); });
  });
})();
