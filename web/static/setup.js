// The set-up link carries its code after "#": browsers never send that part to a server
// (so it is in no access log). Move it into the form and off the address bar.
(function () {
  var code = window.location.hash.slice(1);
  var field = document.getElementById("setup-code");
  if (code && field) {
    field.value = code;
    history.replaceState(null, "", window.location.pathname);
  }
})();
