// openrooms console: copy buttons and the events page's live tail. The pages work without it.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var field = document.querySelector(button.getAttribute("data-copy"));
    if (!field) return;
    field.select();
    var done = function () { button.textContent = "Copied"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); });
    } else {
      document.execCommand("copy");
      done();
    }
  });

  var source = null;
  function tail() {
    var state = document.getElementById("tail-state");
    var list = document.getElementById("tail");
    if (source) { source.close(); source = null; }
    if (!state || !list || !window.EventSource) return;
    source = new EventSource(state.getAttribute("data-stream"));
    source.addEventListener("open", function () { state.textContent = "Live: new events appear at the top."; });
    source.addEventListener("error", function () { state.textContent = "Reconnecting to the live tail…"; });
    source.addEventListener("logged", function (message) {
      list.insertAdjacentHTML("afterbegin", message.data);
    });
  }
  document.addEventListener("DOMContentLoaded", tail);
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target === document.body) tail();
  });
  window.addEventListener("pagehide", function () { if (source) source.close(); });
})();
