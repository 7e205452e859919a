// Rep pages: the inbox's "Select all on this page" box ticks every alert the bulk form can acknowledge.
// A static file (the Content-Security-Policy allows no inline script); without it each box is ticked by hand.
document.addEventListener("DOMContentLoaded", () => {
  for (const all of document.querySelectorAll("input[data-select-all]")) {
    const boxes = () => document.querySelectorAll(`input[type=checkbox][form="${all.dataset.selectAll}"]:not(:disabled)`);
    all.hidden = false;
    all.closest("label")?.removeAttribute("hidden");
    all.addEventListener("change", () => boxes().forEach((box) => { box.checked = all.checked; }));
  }
});
