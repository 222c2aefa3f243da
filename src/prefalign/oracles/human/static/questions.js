"use strict";
// The question page's keyboard shortcuts (its drafts are drafts.js, loaded before this).
(function () {
  const form = document.getElementById("answers");
  if (!form) { return; }
  const questions = Array.from(form.querySelectorAll("fieldset.question"));
  const keys = document.getElementById("keys");
  if (keys) { keys.hidden = false; }
  // Keyboard: j / k move between questions; each radio button's data-keys answer the question
  // that has the focus, which then moves on to the next question.
  function focusQuestion(index) {
    const fieldset = questions[Math.max(0, Math.min(index, questions.length - 1))];
    const input = fieldset.querySelector("input:checked") || fieldset.querySelector("input");
    input.focus();
    fieldset.scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || event.isComposing) { return; }
    const target = event.target instanceof Element ? event.target : null;
    const fieldset = target ? target.closest("fieldset.question") : null;
    const index = questions.indexOf(fieldset);
    if (event.key === "j" || event.key === "k") {
      event.preventDefault();
      focusQuestion(index < 0 ? 0 : index + (event.key === "j" ? 1 : -1));
      return;
    }
    if (index < 0) { return; }
    const input = Array.from(fieldset.querySelectorAll("input[data-keys]")).find(
      function (candidate) { return candidate.dataset.keys.split(" ").includes(event.key); });
    if (!input) { return; }
    event.preventDefault();
    if (!input.checked) {
      input.checked = true;
      input.dispatchEvent(new Event("change", { bubbles: true }));
    }
    if (index + 1 < questions.length) { focusQuestion(index + 1); } else { input.focus(); }
  });
})();
