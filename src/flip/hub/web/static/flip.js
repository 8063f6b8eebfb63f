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

// Concept search: results arrive in place (the form keeps what was typed), and "Add" puts a
// concept's id in the chosen criterion, with that criterion's domain set to the concept's.
const TABLE_OF_DOMAIN = {
  Condition: "condition_occurrence",
  Drug: "drug_exposure",
  Procedure: "procedure_occurrence",
  Measurement: "measurement",
  Observation: "observation",
  Visit: "visit_occurrence",
};

function showAddButtons() {
  document.querySelectorAll(".use-concept").forEach((button) => { button.hidden = false; });
}

function useConcept(form, target, button) {
  const p = target.value;
  const field = form.elements[`${p}-concepts`];
  const ids = field.value.split(/[\s,]+/).filter(Boolean);
  if (!ids.includes(button.dataset.concept)) ids.push(button.dataset.concept);
  field.value = ids.join(" ");
  const table = TABLE_OF_DOMAIN[button.closest("tr").dataset.domain];
  if (table) form.elements[`${p}-table`].value = table;
  field.dispatchEvent(new Event("input", { bubbles: true }));
}

function followSearch(search, form) {
  const target = document.getElementById("concept-target");
  document.getElementById("concept-target-group").hidden = false;
  showAddButtons();
  search.addEventListener("submit", async (event) => {
    event.preventDefault();
    const query = new URLSearchParams(new FormData(search));
    const answer = await fetch(`${search.dataset.fragment}?${query}`, { credentials: "same-origin" });
    if (!answer.ok) return;
    document.getElementById("concept-results").outerHTML = await answer.text();
    showAddButtons();
  });
  search.parentElement.addEventListener("click", (event) => {
    const button = event.target.closest(".use-concept");
    if (button) useConcept(form, target, button);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-events]").forEach(followEvents);
  const form = document.getElementById("cohort-form");
  const box = document.getElementById("definition");
  if (form && box) followForm(form, box);
  const search = document.getElementById("concept-search");
  if (search && form) followSearch(search, form);
});
