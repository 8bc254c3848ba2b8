/* The console's only script besides htmx: upload progress, clearing the chat box after a
   message is sent, Enter to send, and moving focus to swapped-in previews. */
(function () {
  "use strict";
  document.addEventListener("htmx:xhr:progress", function (event) {
    var form = event.target.closest ? event.target.closest("form") : null;
    var bar = form ? form.querySelector("progress") : null;
    var detail = event.detail || {};
    if (bar && detail.lengthComputable && detail.total) {
      var value = Math.round((detail.loaded / detail.total) * 100);
      bar.value = value;
      bar.textContent = value + "%";
    }
  });
  document.addEventListener("htmx:beforeRequest", function (event) {
    var bar = event.target.querySelector ? event.target.querySelector("progress") : null;
    if (bar && event.target.id === "upload-form") { bar.value = 0; }
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.target;
    if (!event.detail || !event.detail.successful) { return; }
    if (form.id === "upload-form") {
      var bar = form.querySelector("progress");
      if (bar) { bar.value = 100; bar.textContent = "100%"; }
      form.querySelector("input[type=file]").value = "";
    }
    if (form.id === "chat-form") {
      var box = form.querySelector("textarea");
      box.value = "";
      box.focus();
    }
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    var heading = event.target.querySelector ? event.target.querySelector("#preview-title") : null;
    if (heading) { heading.focus(); }
  });
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.key === "Enter" && !event.shiftKey && target.hasAttribute &&
        target.hasAttribute("data-enter-submits") && target.form) {
      event.preventDefault();
      target.form.requestSubmit();
    }
  });
})();
