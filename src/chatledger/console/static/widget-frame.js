/* The widget's chat, inside its iframe: anonymous visitor, token-authenticated calls to
   /widget/api, answers with their cited sources, and feedback buttons. Text is always
   inserted as text, never as HTML. */
(function () {
  "use strict";
  var root = document.getElementById("widget");
  var log = document.getElementById("log");
  var form = document.getElementById("ask");
  var input = document.getElementById("question");
  var status = document.getElementById("status");
  var token = root.getAttribute("data-token");
  var conversation = null;

  function call(path, body) {
    return fetch("/widget/api" + path, {
      method: "POST",
      credentials: "omit",
      headers: { "content-type": "application/json", "x-widget-token": token },
      body: JSON.stringify(body || {})
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) {
          throw new Error((data.error && data.error.message) || "The assistant is not available.");
        }
        return data;
      });
    });
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function addMessage(role, text) {
    var item = el("li", "msg " + role);
    item.appendChild(el("span", "who", role === "user" ? "You" : "Assistant"));
    item.appendChild(el("p", "text", text));
    log.appendChild(item);
    item.scrollIntoView({ block: "end" });
    return item;
  }

  function feedbackButtons(item, messageId) {
    var box = el("div", "feedback");
    var question = el("span", "", "Helpful?");
    box.appendChild(question);
    [["positive", "Yes"], ["negative", "No"]].forEach(function (pair) {
      var button = el("button", "", pair[1]);
      button.type = "button";
      button.setAttribute("data-rating", pair[0]);
      button.setAttribute("aria-label", pair[0] === "positive" ? "Helpful" : "Not helpful");
      button.addEventListener("click", function () {
        box.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
        call("/messages/" + encodeURIComponent(messageId) + "/feedback", { rating: pair[0] })
          .then(function () {
            box.textContent = "Thanks for your feedback.";
            box.setAttribute("role", "status");
          })
          .catch(function (error) { status.textContent = error.message; });
      });
      box.appendChild(button);
    });
    item.appendChild(box);
  }

  function showAnswer(answer) {
    var item = addMessage("bot", answer.text);
    item.setAttribute("data-message-id", answer.message_id);
    if (answer.sources && answer.sources.length) {
      var list = el("ul", "sources");
      list.setAttribute("aria-label", "Sources");
      answer.sources.forEach(function (source) {
        var label = source.document + (source.heading ? " · " + source.heading : "");
        list.appendChild(el("li", "", label));
      });
      item.appendChild(list);
    }
    feedbackButtons(item, answer.message_id);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) { return; }
    var button = form.querySelector("button");
    button.disabled = true;
    addMessage("user", text);
    input.value = "";
    status.textContent = "The assistant is answering…";
    var ready = conversation ? Promise.resolve(conversation) :
      call("/conversations").then(function (data) { conversation = data.conversation_id; return conversation; });
    ready
      .then(function (id) { return call("/conversations/" + encodeURIComponent(id) + "/messages", { text: text }); })
      .then(function (answer) { status.textContent = ""; showAnswer(answer); })
      .catch(function (error) { status.textContent = error.message; })
      .then(function () { button.disabled = false; input.focus(); });
  });

  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
})();
