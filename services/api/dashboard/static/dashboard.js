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
