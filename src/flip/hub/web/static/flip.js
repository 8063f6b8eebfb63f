// FLIP hub: progressive enhancement only. Every page works without this file.
"use strict";

// Live parts: an element with data-events is replaced by each "update" server-sent event.
function followEvents(element) {
  const source = new EventSource(element.dataset.events);
  source.addEventListener("update", (event) => {
    element.innerHTML = event.data;
  });
  source.addEventListener("done", () => {
    source.close();
    element.removeAttribute("data-events");
    element.dataset.final = "true";
  });
}

// The cohort builder: the JSON beside the form follows the form until edited by hand.
function numberOrNull(text, integer) {
  const trimmed = text.trim();
  if (!trimmed) return null;
  const value = integer ? parseInt(trimmed, 10) : parseFloat(trimmed);
  return Number.isNaN(value) ? trimmed : value;
}

function definitionFrom(form) {
  const get = (name) => (form.elements[name] ? form.elements[name].value : "");
  const checked = (name) => Boolean(form.elements[name] && form.elements[name].checked);
  const out = { name: get("name").trim() || "cohort" };
  for (const part of ["include", "exclude"]) {
    const criteria = [];
    for (let i = 0; form.elements[`${part}-${i}-table`]; i += 1) {
      const p = `${part}-${i}`;
      const concepts = get(`${p}-concepts`).split(/[\s,]+/).filter(Boolean).map((c) => numberOrNull(c, true));
      if (!concepts.length) continue;
      const criterion = { table: get(`${p}-table`), concept_ids: concepts, descendants: checked(`${p}-descendants`) };
      for (const bound of ["value_min", "value_max"]) {
        const value = numberOrNull(get(`${p}-${bound}`), false);
        if (value !== null) criterion[bound] = value;
      }
      for (const bound of ["start", "end"]) {
        if (get(`${p}-${bound}`)) criterion[bound] = get(`${p}-${bound}`);
      }
      criteria.push(criterion);
    }
    if (criteria.length) out[part] = criteria;
  }
  for (const bound of ["age_min", "age_max"]) {
    const value = numberOrNull(get(bound), true);
    if (value !== null) out[bound] = value;
  }
  const sexes = ["female", "male"].filter((s) => checked(`sex-${s}`));
  if (sexes.length) out.sex = sexes;
  const shown = ["age", "sex"].filter((h) => checked(`histogram-${h}`));
  if (shown.length) out.histograms = shown;
  return out;
}

function followForm(form, box) {
  let edited = false;
  box.addEventListener("input", () => { edited = true; });
  const show = () => {
    if (!edited) box.value = JSON.stringify(definitionFrom(form), null, 2);
  };
  form.addEventListener("input", show);
  form.addEventListener("change", show);
  show();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-events]").forEach(followEvents);
  const form = document.getElementById("cohort-form");
  const box = document.getElementById("definition");
  if (form && box) followForm(form, box);
});
