// Unknown faces the cameras saw lately, each once with how often it was seen: "who is this?"
// enrols one into a new or an existing person, from the encodings its track kept (no image is
// kept, unless snapshots are on). And the latest recognitions, where "not X" takes a wrong name
// back. Faces in view of the webcam page have their own "who is this?" there.
import { call } from "./api.js";
import { element, percent } from "./draw.js";

export const title = "Unknown faces";

export async function render(main, app) {
  const grid = element("div", { className: "grid", id: "unknown-faces" });
  const recent = element("ul", { className: "faces-list", id: "recent-named" });
  recent.setAttribute("aria-label", "Latest recognitions");
  const people = element("datalist", { id: "known-names" });
  const refresh = element("button", { type: "button", className: "quiet", id: "unknown-refresh" }, "Refresh");
  main.append(element("h1", {}, "Unknown faces"), refresh,
    element("p", { className: "hint" }, "Faces the cameras saw that nobody is enrolled as, newest first. Faces in view of your webcam are on the Webcam page."),
    grid, people, element("section", { className: "panel" },
      element("h2", {}, "Latest recognitions"),
      element("p", { className: "hint" }, "If one is wrong, take the name back: a face enrolled here by “who is this?” that caused it is removed."),
      recent));
  const urls = [];

  async function load() {
    try {
      const [unknown, named, everyone] = await Promise.all([
        call("GET", "/unknown"), call("GET", "/events", { query: { newest: true, limit: 200 } }),
        call("GET", "/people", { query: { size: 1000 } })]);
      people.replaceChildren(...everyone.people.map((person) => element("option", { value: person.name })));
      showUnknown(unknown.faces);
      showRecent(named.events.filter((event) => event.name && event.event !== "leave").slice(0, 20));
    } catch (error) {
      grid.replaceChildren(element("p", { className: "error" }, error.message));
    }
  }

  function showUnknown(faces) {
    for (const url of urls.splice(0)) URL.revokeObjectURL(url);
    if (!faces.length) {
      grid.replaceChildren(element("p", { className: "hint" }, "No unknown face lately."));
      return;
    }
    grid.replaceChildren(...faces.map((face) => {
      const picture = element("img", { className: "thumb", alt: `Unknown face ${face.event_id}` });
      if (face.snapshot_event_id) {
        call("GET", `/events/${face.snapshot_event_id}/snapshot`).then((blob) => {
          const url = URL.createObjectURL(blob);
          urls.push(url);
          picture.src = url;
        }).catch(() => {});
      } else {
        picture.alt = "No snapshot (snapshots are off)";
      }
      const id = `name-${face.event_id}`;
      const name = element("input", { id, required: true, autocomplete: "off" });
      name.setAttribute("list", "known-names");
      const form = element("form", { className: "row" },
        element("label", { htmlFor: id }, "Who is this?"), name,
        element("button", { type: "submit" }, "Enrol"));
      form.dataset.admin = "";
      form.hidden = !app.admin;
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        try {
          const done = await call("POST", `/events/${face.event_id}/enroll`, { json: { name: name.value } });
          app.toast(`${done.name} enrolled: ${done.face_count} face${done.face_count === 1 ? "" : "s"} now.`);
          load();
        } catch (error) {
          app.toast(error.message, true);
        }
      });
      const card = element("article", { className: "card" }, picture,
        element("p", {}, `Seen ${face.seen} time${face.seen === 1 ? "" : "s"}, last on ${face.stream.name} at ${new Date(face.last_seen).toLocaleString()}.`),
        form);
      card.dataset.event = face.event_id;
      return card;
    }));
  }

  function showRecent(events) {
    if (!events.length) {
      recent.replaceChildren(element("li", { className: "hint" }, "No recognition yet."));
      return;
    }
    recent.replaceChildren(...events.map((event) => {
      const not = element("button", { type: "button", className: "quiet" }, `Not ${event.name}`);
      not.dataset.admin = "";
      not.hidden = !app.admin;
      not.addEventListener("click", async () => {
        if (!(await app.confirm(`Is this not ${event.name}? The name is taken back from this sighting.`, `Not ${event.name}`))) return;
        try {
          const done = await call("POST", `/events/${event.id}/not`);
          app.toast(done.deleted_face ? `Taken back, and the face that caused it removed.` : "Taken back.");
          load();
        } catch (error) {
          app.toast(error.message, true);
        }
      });
      return element("li", {}, `${new Date(event.time).toLocaleString()} · ${event.stream.name}: ${event.name} (${percent(event.confidence)}) `, not);
    }));
  }

  refresh.addEventListener("click", load);
  await load();
  return () => {
    for (const url of urls) URL.revokeObjectURL(url);
  };
}
