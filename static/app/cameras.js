// The cameras attached over HTTP: each one's live view (boxes and names drawn by its runner),
// its status, the events as they happen, and who is in view now.
import { call, follow, watch } from "./api.js";
import { element, percent } from "./draw.js";

export const title = "Cameras";

export async function render(main, app) {
  const stop = new AbortController();
  const grid = element("div", { className: "grid", id: "cameras" });
  const present = element("ul", { className: "faces-list", id: "presence" });
  present.setAttribute("aria-label", "In view now");
  const feed = element("ul", { className: "feed", id: "event-feed" });
  feed.setAttribute("aria-label", "Events as they happen");
  const add = addForm(app, () => refresh(true));
  main.append(element("h1", {}, "Cameras"), add, grid,
    element("section", { className: "panel" }, element("h2", {}, "In view now"), present),
    element("section", { className: "panel" }, element("h2", {}, "Events"), feed));

  const cards = new Map();
  async function refresh(rebuild = false) {
    let streams;
    try {
      streams = (await call("GET", "/streams")).streams;
    } catch (error) {
      grid.replaceChildren(element("p", { className: "error" }, error.message));
      return;
    }
    if (!streams.length) {
      grid.replaceChildren(element("p", { className: "hint" }, app.admin
        ? "No camera yet: add one above." : "No camera yet."));
    }
    for (const [id, card] of cards) {
      if (rebuild || !streams.some((one) => one.id === id)) { card.close(); cards.delete(id); }
    }
    for (const stream of streams) {
      if (!cards.has(stream.id)) cards.set(stream.id, cameraCard(app, stream, grid, () => refresh(true)));
      cards.get(stream.id).status(stream.status);
    }
    try {
      const seen = await call("GET", "/presence");
      present.replaceChildren(...(seen.present.length ? seen.present.map((one) => element("li", {},
        `${one.name} on ${one.stream.name} since ${new Date(one.since).toLocaleTimeString()}`
        + ` (${percent(one.confidence)})`)) : [element("li", { className: "hint" }, "Nobody.")]));
    } catch { /* the next refresh says it */ }
  }

  await refresh();
  const timer = setInterval(refresh, 2000);
  follow("/events/stream", (event) => {
    const who = event.name ?? "an unknown face";
    const item = element("li", {},
      `${new Date(event.time).toLocaleTimeString()} · ${event.stream.name}: ${who} `
      + `${{ appear: "appeared", change: "is now named", leave: "left" }[event.event]}`);
    feed.prepend(item);
    while (feed.children.length > 100) feed.lastChild.remove();
  }, stop.signal).catch((error) => feed.prepend(element("li", { className: "error" }, error.message)));

  return () => {
    clearInterval(timer);
    stop.abort();
    for (const card of cards.values()) card.close();
  };
}

function cameraCard(app, stream, grid, changed) {
  const stop = new AbortController();
  const picture = element("img", { className: "live", alt: `${stream.name}, live, with the faces marked` });
  const badge = element("span", { className: "badge" });
  const line = element("p", { className: "stats" });
  const remove = element("button", { type: "button", className: "danger" }, "Delete");
  remove.dataset.admin = "";
  remove.hidden = !app.admin;
  const card = element("article", { className: "card" },
    element("h2", {}, stream.name, " ", badge), picture, line, remove);
  card.dataset.stream = stream.id;
  grid.append(card);
  let shown = null;
  let viewing = false;

  function view() {
    if (viewing) return;
    viewing = true;
    watch(`/streams/${stream.id}/live`, (blob) => {
      const next = URL.createObjectURL(blob);
      picture.src = next;
      if (shown) URL.revokeObjectURL(shown);
      shown = next;
    }, stop.signal).catch(() => {}).finally(() => { viewing = false; });
  }

  remove.addEventListener("click", async () => {
    if (!(await app.confirm(`Delete the camera ${stream.name}, and its events?`))) return;
    try {
      await call("DELETE", `/streams/${stream.id}`);
      app.toast(`${stream.name} deleted.`);
      changed();
    } catch (error) {
      app.toast(error.message, true);
    }
  });

  return {
    status(status) {
      badge.textContent = status.state;
      badge.className = `badge ${status.state}`;
      const parts = [status.running ? `${status.fps ?? 0} fps` : "not running",
        `${status.faces_in_view} in view`];
      if (status.last_error) parts.push(status.last_error);
      line.textContent = parts.join(" · ");
      if (status.running) view();
    },
    close() {
      stop.abort();
      card.remove();
      if (shown) URL.revokeObjectURL(shown);
    },
  };
}

function addForm(app, added) {
  const name = element("input", { id: "stream-name", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}" });
  const source = element("input", { id: "stream-source", required: true, size: 40, placeholder: "rtsp://user:password@camera/stream" });
  const form = element("form", { className: "panel", id: "add-stream" },
    element("h2", {}, "Add a camera"),
    element("div", { className: "row" }, element("label", { htmlFor: "stream-name" }, "Name"), name,
      element("label", { htmlFor: "stream-source" }, "Source"), source,
      element("button", { type: "submit" }, "Add")),
    element("p", { className: "hint" }, "An RTSP or HTTP (MJPEG) address on a network the service may reach, or a local camera's number."));
  form.dataset.admin = "";
  form.hidden = !app.admin;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await call("POST", "/streams", { json: { name: name.value, source: source.value } });
      app.toast(`${name.value} added: it starts within seconds.`);
      form.reset();
      added();
    } catch (error) {
      app.toast(error.message, true);
    }
  });
  return form;
}
