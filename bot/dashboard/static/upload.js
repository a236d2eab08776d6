// Teaching page, enhanced: files dropped on the drop zone or chosen are sent one request
// per file (fetch, the CSRF token in a header), each file's progress and outcome listed
// as it comes. Without this script the form posts every file at once and the next page
// is the report.
"use strict";
(function () {
  const form = document.getElementById("upload");
  if (!form || !window.fetch || !window.FormData) return;
  const input = document.getElementById("files");
  const drop = document.getElementById("drop");
  const label = document.getElementById("label");
  const section = document.getElementById("progress");
  const bar = document.getElementById("overall");
  const summary = document.getElementById("overall-text");
  const list = document.getElementById("files-progress");
  let dropped = null;

  const isZip = (file) => /\.zip$/i.test(file.name) || file.type === "application/zip";

  function row(file) {
    const li = document.createElement("li");
    const name = document.createElement("strong");
    name.textContent = file.name;
    const state = document.createElement("span");
    state.textContent = ": waiting";
    li.append(name, state);
    list.append(li);
    return (text, kind) => {
      state.textContent = ": " + text;
      if (kind) li.className = kind;
    };
  }

  async function send(file, show) {
    const body = new FormData();
    body.append("label", label.value);
    body.append("files", file, file.name);
    show(isZip(file) ? "uploading and teaching the zip…" : "uploading…");
    let response;
    try {
      response = await fetch(form.action, {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { "X-CSRF-Token": form.dataset.csrf, "Accept": "application/json" },
      });
    } catch (err) {
      show("the upload failed (network); try again", "refused");
      return 0;
    }
    let data = null;
    try { data = await response.json(); } catch (err) { data = null; }
    if (!response.ok || !data) {
      show((data && data.error) || "refused (HTTP " + response.status + ")", "refused");
      return 0;
    }
    if (data.entries.length === 1) {
      show(data.entries[0].text, data.entries[0].kind);
    } else {
      show(data.summary, data.learned ? "learned" : "refused");
      for (const entry of data.entries) {
        const li = document.createElement("li");
        li.className = entry.kind;
        li.textContent = entry.name + (entry.label ? " (" + entry.label + ")" : "") + ": " + entry.text;
        list.append(li);
      }
    }
    return data.learned;
  }

  async function teach(files) {
    if (!files.length) return;
    section.hidden = false;
    list.textContent = "";
    bar.max = files.length;
    bar.value = 0;
    const rows = files.map(row);
    let learned = 0;
    for (let i = 0; i < files.length; i++) {
      summary.textContent = "Sending " + (i + 1) + " of " + files.length + "…";
      learned += await send(files[i], rows[i]);
      bar.value = i + 1;
    }
    summary.textContent = "Done: learned " + learned + " image(s) from " + files.length + " file(s).";
    section.focus();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const files = dropped || Array.from(input.files);
    dropped = null;
    teach(files).then(() => { form.reset(); });
  });
  input.addEventListener("change", () => { dropped = null; });
  for (const kind of ["dragenter", "dragover"]) {
    drop.addEventListener(kind, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const kind of ["dragleave", "drop"]) {
    drop.addEventListener(kind, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    dropped = Array.from(event.dataTransfer.files);
    if (dropped.some(isZip) || label.value.trim()) {
      teach(dropped).then(() => { dropped = null; });
    } else {
      summary.textContent = "";
      section.hidden = false;
      summary.textContent = dropped.length + " file(s) ready: choose a label, then Teach.";
      label.focus();
    }
  });
  section.tabIndex = -1;
})();
