// The console works without this file; with it, deletion asks in a dialog and a submitted
// form shows that it is busy.
document.addEventListener("click", function (event) {
  var opener = event.target.closest("[data-dialog]");
  if (opener) {
    var dialog = document.getElementById(opener.getAttribute("data-dialog"));
    if (dialog && dialog.showModal) {
      event.preventDefault();
      dialog.showModal();
      var first = dialog.querySelector("button[type=submit]");
      if (first) { first.focus(); }
    }
    return;
  }
  var closer = event.target.closest("[data-close]");
  if (closer) {
    closer.closest("dialog").close();
  }
});

document.addEventListener("submit", function (event) {
  var button = event.target.querySelector("[data-busy]");
  if (button && !event.defaultPrevented) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    button.textContent = button.getAttribute("data-busy");
  }
});
