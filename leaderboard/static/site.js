// rocobench leaderboard: sorting, filters, plot and seed pickers. Inlined into every page and
// allowed to run by its hash (see the Content-Security-Policy); the pages are readable without it.
"use strict";

// Sort a table by one column. Header buttons take clicks, Enter and Space like any button.
// The first sort of a column puts its best value first; empty cells always go last.
function sortTable(th) {
  const table = th.closest("table");
  const body = table.tBodies[0];
  const column = Array.from(th.parentNode.children).indexOf(th);
  const current = th.getAttribute("aria-sort");
  const first = th.dataset.first === "descending" ? -1 : 1;
  const dir = current === "ascending" ? -1 : current === "descending" ? 1 : first;
  const key = (tr) => (tr.children[column] ? tr.children[column].dataset.sort || "" : "");
  const rows = Array.from(body.rows).sort((a, b) => {
    const x = key(a);
    const y = key(b);
    if (x === "" || y === "") return (x === "") - (y === "");
    const nx = Number(x);
    const ny = Number(y);
    return dir * (isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny);
  });
  th.parentNode.querySelectorAll("th[aria-sort]").forEach((h) => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
  rows.forEach((tr) => body.appendChild(tr));
  const status = document.getElementById(table.dataset.status || "");
  if (status) status.textContent = `Sorted by ${th.dataset.label}, ${th.getAttribute("aria-sort")}.`;
}

document.querySelectorAll("th[data-sortable] > button").forEach((button) => {
  button.addEventListener("click", () => sortTable(button.parentNode));
});

// Filter the rows of a leaderboard table by base model, technique and free text.
document.querySelectorAll("form.filters").forEach((form) => {
  const table = document.getElementById(form.dataset.table);
  const count = form.querySelector("output");
  const apply = () => {
    const base = form.elements.base ? form.elements.base.value : "";
    const option = form.elements.technique ? form.elements.technique.selectedOptions[0] : null;
    const noTechnique = option !== null && option.hasAttribute("data-none");
    const technique = option && !noTechnique ? option.value : "";
    const text = form.elements.q.value.trim().toLowerCase();
    let shown = 0;
    const rows = Array.from(table.tBodies[0].rows);
    rows.forEach((tr) => {
      const techniques = JSON.parse(tr.dataset.techniques || "[]");
      const ok =
        (base === "" || tr.dataset.base === base) &&
        (noTechnique ? techniques.length === 0 : technique === "" || techniques.includes(technique)) &&
        (text === "" || tr.textContent.toLowerCase().includes(text));
      tr.hidden = !ok;
      shown += ok ? 1 : 0;
    });
    if (count) count.textContent = `${shown} of ${rows.length} variants`;
    // The plots of this task show the same rows; the front of all variants is hidden meanwhile.
    const section = form.closest("section");
    if (section) {
      const visible = new Set(rows.filter((tr) => !tr.hidden).map((tr) => tr.dataset.variant));
      section.querySelectorAll("svg.pareto a.point").forEach((a) => {
        a.classList.toggle("off", !visible.has(a.dataset.variant));
      });
      section.querySelectorAll("svg.pareto g.arrow").forEach((g) => {
        g.classList.toggle("off", !(visible.has(g.dataset.from) && visible.has(g.dataset.to)));
      });
      section.querySelectorAll("svg.pareto path.front").forEach((path) => {
        path.classList.toggle("off", shown !== rows.length);
      });
    }
  };
  form.addEventListener("input", apply);
  form.addEventListener("change", apply);
  form.addEventListener("submit", (event) => event.preventDefault());
  apply();
});

// Show the Pareto plots of one quality metric at a time (all are shown without script).
document.querySelectorAll("select[data-plots]").forEach((select) => {
  const box = document.getElementById(select.dataset.plots);
  const apply = () =>
    box.querySelectorAll("[data-metric]").forEach((fig) => {
      fig.hidden = fig.dataset.metric !== select.value;
    });
  select.addEventListener("change", apply);
  apply();
});

// Variant pages: one seed's samples at a time, and a text filter over them.
document.querySelectorAll("select[data-seeds]").forEach((select) => {
  const box = document.getElementById(select.dataset.seeds);
  const apply = () =>
    box.querySelectorAll("[data-seed-panel]").forEach((panel) => {
      panel.hidden = panel.dataset.seedPanel !== select.value;
    });
  select.addEventListener("change", apply);
  apply();
});

document.querySelectorAll("input[data-sample-filter]").forEach((input) => {
  const box = document.getElementById(input.dataset.sampleFilter);
  input.addEventListener("input", () => {
    const text = input.value.trim().toLowerCase();
    box.querySelectorAll("tbody tr").forEach((tr) => {
      tr.hidden = text !== "" && !tr.textContent.toLowerCase().includes(text);
    });
  });
});

// Status and hardware: show only rows of one verification status, or of one machine (time,
// memory and energy compare only between runs on the same hardware). Classes, not `hidden`,
// so that these selectors and the filters above combine.
document.querySelectorAll("select[data-status-filter]").forEach((select) => {
  const table = document.getElementById(select.dataset.statusFilter);
  const apply = () =>
    Array.from(table.tBodies[0].rows).forEach((tr) => {
      tr.classList.toggle("off-status", select.value !== "" && tr.dataset.status !== select.value);
    });
  select.addEventListener("change", apply);
  apply();
});

document.querySelectorAll("select[data-hardware-filter]").forEach((select) => {
  const table = document.getElementById(select.dataset.hardwareFilter);
  const apply = () => {
    table.classList.toggle("mixed-hardware", select.value === "");
    Array.from(table.tBodies[0].rows).forEach((tr) => {
      tr.classList.toggle("off-hardware", select.value !== "" && tr.dataset.hardware !== select.value);
    });
  };
  select.addEventListener("change", apply);
  apply();
});
