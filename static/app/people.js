// The people enrolled: search and page through them; each one's faces with their sources and
// dates; rename or merge, delete a face, delete the person; enrol from uploads (several files
// at once). The webcam page enrols from the camera.
import { call } from "./api.js";
import { element } from "./draw.js";

export const title = "People";
const SIZE = 25;

export async function render(main, app) {
  let page = 1;
  const search = element("input", { type: "search", id: "people-search", autocomplete: "off" });
  const table = element("table", { id: "people-table" });
  const pager = element("div", { className: "row", id: "people-pager" });
  const detail = element("section", { className: "panel", id: "person", hidden: true });
  detail.setAttribute("aria-live", "polite");
  main.append(element("h1", {}, "People"),
    element("form", { className: "row", role: "search", id: "people-find" },
      element("label", { htmlFor: "people-search" }, "Search names"), search),
    table, pager, detail, uploadPanel(app, () => list()));

  async function list() {
    let answer;
    try {
      answer = await call("GET", "/people", { query: { page, size: SIZE, search: search.value.trim() } });
    } catch (error) {
      table.replaceChildren(element("caption", { className: "error" }, error.message));
      return;
    }
    const head = element("tr", {}, element("th", { scope: "col" }, "Name"),
      element("th", { scope: "col" }, "Faces"));
    const rows = answer.people.map((person) => {
      const open = element("button", { type: "button", className: "quiet" }, person.name);
      open.addEventListener("click", () => showPerson(person.name));
      return element("tr", {}, element("td", {}, open), element("td", {}, String(person.face_count)));
    });
    table.replaceChildren(element("caption", { className: "visually-hidden" }, "People enrolled"),
      element("thead", {}, head), element("tbody", {}, ...rows));
    if (!rows.length) {
      table.append(element("tbody", {}, element("tr", {}, element("td", { colSpan: 2, className: "hint" },
        search.value ? "Nobody of that name." : "Nobody is enrolled yet."))));
    }
    const previous = element("button", { type: "button", className: "quiet", disabled: page <= 1 }, "Previous");
    const next = element("button", { type: "button", className: "quiet", disabled: page >= answer.pages }, "Next");
    previous.addEventListener("click", () => { page -= 1; list(); });
    next.addEventListener("click", () => { page += 1; list(); });
    pager.replaceChildren(previous, element("span", {}, `Page ${answer.page} of ${Math.max(answer.pages, 1)} · ${answer.total} people`), next);
  }

  async function showPerson(name) {
    let person;
    try {
      person = await call("GET", `/people/${encodeURIComponent(name)}`);
    } catch (error) {
      app.toast(error.message, true);
      list();
      return;
    }
    const faces = element("table", { id: "person-faces" },
      element("caption", {}, `${person.name}'s faces`),
      element("thead", {}, element("tr", {}, element("th", { scope: "col" }, "Face"),
        element("th", { scope: "col" }, "Source"), element("th", { scope: "col" }, "Added"),
        element("th", { scope: "col" }, element("span", { className: "visually-hidden" }, "Actions")))),
      element("tbody", {}, ...person.faces.map((face) => {
        const remove = element("button", { type: "button", className: "danger" }, "Delete");
        remove.setAttribute("aria-label", `Delete face ${face.id}`);
        remove.dataset.admin = "";
        remove.hidden = !app.admin;
        remove.addEventListener("click", async () => {
          if (!(await app.confirm(`Delete face ${face.id} of ${person.name}?${person.faces.length === 1 ? " It is their last: they are deleted too." : ""}`))) return;
          try {
            const done = await call("DELETE", `/people/${encodeURIComponent(person.name)}/faces/${face.id}`);
            app.toast(`Face ${face.id} deleted; ${done.faces_left} left.`);
            list();
            if (done.faces_left) showPerson(person.name); else detail.hidden = true;
          } catch (error) {
            app.toast(error.message, true);
          }
        });
        return element("tr", {}, element("td", {}, String(face.id)), element("td", {}, face.source),
          element("td", {}, new Date(face.created_at).toLocaleString()), element("td", {}, remove));
      })));
    const newName = element("input", { id: "rename-to", required: true, autocomplete: "off" });
    const rename = element("form", { className: "row", id: "rename-form" },
      element("label", { htmlFor: "rename-to" }, "Rename to"), newName,
      element("button", { type: "submit" }, "Rename or merge"));
    rename.dataset.admin = "";
    rename.hidden = !app.admin;
    rename.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const done = await call("POST", `/people/${encodeURIComponent(person.name)}/rename`, { json: { new_name: newName.value } });
        app.toast(done.merged ? `Merged into ${done.name}: ${done.face_count} faces.` : `Renamed to ${done.name}.`);
        await list();
        showPerson(done.name);
      } catch (error) {
        app.toast(error.message, true);
      }
    });
    const forget = element("button", { type: "button", className: "danger", id: "delete-person" }, `Delete ${person.name}`);
    forget.dataset.admin = "";
    forget.hidden = !app.admin;
    forget.addEventListener("click", async () => {
      if (!(await app.confirm(`Delete ${person.name} and all ${person.faces.length} of their faces? This cannot be undone.`))) return;
      try {
        await call("DELETE", `/people/${encodeURIComponent(person.name)}`);
        app.toast(`${person.name} deleted.`);
        detail.hidden = true;
        list();
      } catch (error) {
        app.toast(error.message, true);
      }
    });
    detail.replaceChildren(element("h2", { id: "person-name" }, person.name),
      element("p", { className: "hint" }, `Enrolled since ${new Date(person.created_at).toLocaleString()}.`),
      faces, rename, forget);
    detail.hidden = false;
  }

  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { page = 1; list(); }, 250);
  });
  main.querySelector("#people-find").addEventListener("submit", (event) => event.preventDefault());
  await list();
}

function uploadPanel(app, done) {
  const name = element("input", { id: "upload-name", required: true, autocomplete: "off" });
  const files = element("input", { id: "upload-files", type: "file", accept: "image/*", multiple: true, required: true });
  const results = element("ul", { className: "faces-list", id: "upload-results" });
  const form = element("form", {},
    element("div", { className: "row" }, element("label", { htmlFor: "upload-name" }, "Name"), name),
    element("div", { className: "row" }, element("label", { htmlFor: "upload-files" }, "Photos"), files),
    element("button", { type: "submit" }, "Enrol"));
  const panel = element("section", { className: "panel", id: "upload" },
    element("h2", {}, "Enrol from photos"),
    element("p", { className: "hint" }, "One face per photo. Several photos of a person make recognition surer."),
    form, results);
  panel.dataset.admin = "";
  panel.hidden = !app.admin;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    results.replaceChildren();
    for (const file of files.files) {
      const item = element("li", {}, `${file.name}: enrolling…`);
      results.append(item);
      try {
        const answer = await call("POST", "/enroll", { body: file, type: file.type || "application/octet-stream", query: { name: name.value } });
        item.textContent = answer.duplicate ? `${file.name}: already enrolled.`
          : `${file.name}: enrolled (${answer.face_count} faces now).`;
      } catch (error) {
        item.textContent = `${file.name}: ${error.message}`;
        item.className = "error";
      }
    }
    done();
  });
  return panel;
}
