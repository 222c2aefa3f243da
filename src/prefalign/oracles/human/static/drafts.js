"use strict";
// Drafts, on the rating page and the question page alike: each choice is posted to "draft" as it
// is made, in order, and the counter shows how many are saved. The form names its keys:
// data-draft (the JSON key of the posted values), data-draft-count (the key of the reply's
// count), data-counter (the id of the counter) and data-noun (what one value is called).
(function () {
  const form = document.querySelector("form[data-draft]");
  if (!form) { return; }
  const settings = form.dataset;
  const counter = document.getElementById(settings.counter);
  const saveStatus = document.getElementById("save-status");
  let queue = Promise.resolve();
  function send(id, value) {
    const body = JSON.stringify({ [settings.draft]: { [id]: value } });
    return fetch("draft", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: body,
    }).then(function (response) {
      return response.json().then(function (reply) {
        if (!response.ok) { throw new Error(reply.error || response.statusText); }
        counter.textContent = String(reply[settings.draftCount]);
        saveStatus.textContent = "";
      });
    }).catch(function (error) {
      saveStatus.textContent = "This " + settings.noun + " was not saved as a draft (" +
        error.message + "); it is still sent when you submit.";
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
