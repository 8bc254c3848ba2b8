/* ChatLedger chat widget loader: <script src=".../widget.js" data-chatbot="pk_..."></script>
   Adds a button and, on first open, an iframe served by ChatLedger (which checks that this
   site may embed the chatbot). Nothing else touches the host page. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) { return; }
  var key = script.getAttribute("data-chatbot");
  if (!key) { return; }
  var base = new URL(script.src, location.href).origin;
  var label = script.getAttribute("data-label") || "Chat with us";

  function setup() {
    var open = false;
    var button = document.createElement("button");
    var frame = document.createElement("iframe");
    var id = "chatledger-widget-" + Math.random().toString(36).slice(2, 8);
    button.type = "button";
    button.textContent = label;
    button.setAttribute("aria-expanded", "false");
    button.setAttribute("aria-controls", id);
    button.setAttribute("data-chatledger-widget", "button");
    var b = button.style;
    b.position = "fixed"; b.right = "20px"; b.bottom = "20px"; b.zIndex = "2147483646";
    b.padding = "12px 18px"; b.borderRadius = "24px"; b.border = "0"; b.cursor = "pointer";
    b.background = "#1f4e8c"; b.color = "#fff"; b.font = "600 15px system-ui, sans-serif";
    b.boxShadow = "0 2px 8px rgba(0,0,0,.25)";
    frame.id = id;
    frame.title = "Chat assistant";
    frame.hidden = true;
    frame.setAttribute("data-chatledger-widget", "frame");
    var f = frame.style;
    f.position = "fixed"; f.right = "20px"; f.bottom = "76px"; f.zIndex = "2147483647";
    f.width = "min(380px, calc(100vw - 40px))"; f.height = "min(560px, calc(100vh - 100px))";
    f.border = "1px solid #c8ccd2"; f.borderRadius = "12px"; f.background = "#fff";
    f.boxShadow = "0 6px 24px rgba(0,0,0,.2)";
    button.addEventListener("click", function () {
      open = !open;
      if (open && !frame.src) {
        frame.src = base + "/widget/frame?key=" + encodeURIComponent(key) +
          "&origin=" + encodeURIComponent(location.origin);
      }
      frame.hidden = !open;
      button.setAttribute("aria-expanded", String(open));
      button.textContent = open ? "Close chat" : label;
      if (open) { frame.focus(); }
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && open) { button.click(); button.focus(); }
    });
    document.body.appendChild(frame);
    document.body.appendChild(button);
  }

  if (document.body) { setup(); } else { document.addEventListener("DOMContentLoaded", setup); }
})();
