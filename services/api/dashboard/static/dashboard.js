// Enhancements only: every page works without this file.
// Copy buttons: <button class="copy" data-copy="text">, shown once this script runs.
document.documentElement.classList.add("js");
document.addEventListener("click", function (e) {
  var b = e.target.closest("button.copy");
  if (!b) return;
  var done = function () {
    var label = b.textContent;
    b.textContent = "Copied";
    setTimeout(function () { b.textContent = label; }, 1200);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(b.dataset.copy).then(done);
  } else {  // plain http on another host: the clipboard API is off, use a selection
    var t = document.createElement("textarea");
    t.value = b.dataset.copy;
    document.body.appendChild(t);
    t.select();
    document.execCommand("copy");
    t.remove();
    done();
  }
});

// Live refresh: a page that is still changing (a message in flight) marks an element with
// data-refresh="<seconds>"; reload while the tab is visible.
var live = document.querySelector("[data-refresh]");
if (live) {
  setInterval(function () {
    if (document.visibilityState === "visible") location.reload();
  }, 1000 * Number(live.dataset.refresh));
}
