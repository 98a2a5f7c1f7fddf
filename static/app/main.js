// The app: one page at a time in <main>, chosen by the URL's #/fragment; the API key dialog;
// what the key may do (admin actions are hidden for a read key); messages.
import { access, apiKey, setApiKey, whenUnauthorized } from "./api.js";
import * as recognize from "./recognize.js";
import * as webcam from "./webcam.js";
import * as cameras from "./cameras.js";
import * as people from "./people.js";
import * as unknown from "./unknown.js";

const PAGES = { recognize, webcam, cameras, people, unknown };
const main = document.getElementById("main");
const keyDialog = document.getElementById("key-dialog");
let current = null;
let leaving = null;

export const app = {
  scope: "open",
  get admin() {
    return this.scope === "admin" || this.scope === "open";
  },
  toast(text, bad = false) {
    const toast = document.getElementById("toast");
    toast.textContent = text;
    toast.className = bad ? "shown bad" : "shown";
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { toast.className = ""; }, bad ? 8000 : 4000);
  },
  confirm(text, action = "Delete") {
    const dialog = document.getElementById("confirm-dialog");
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-yes").textContent = action;
    dialog.returnValue = "";
    dialog.showModal();
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    });
  },
  askForKey(why) {
    document.getElementById("key-why").textContent = why ||
      "This service needs an API key. It is kept in this tab only (session storage) and sent in the X-API-Key header.";
    document.getElementById("key-error").textContent = "";
    document.getElementById("key-input").value = "";
    if (!keyDialog.open) keyDialog.showModal();
  },
};

async function learnScope() {
  app.scope = await access().catch(() => "none");
  document.body.classList.toggle("read-only", !app.admin);
  document.getElementById("key-button").textContent =
    app.scope === "open" ? "API key (none needed)"
      : apiKey() && app.scope !== "none" ? `API key (${app.scope})` : "API key";
  for (const element of document.querySelectorAll("[data-admin]")) element.hidden = !app.admin;
  return app.scope;
}

async function show() {
  const name = (location.hash.match(/^#\/([a-z]+)/) || [])[1] || "recognize";
  const page = PAGES[name] || recognize;
  if (leaving) leaving();
  leaving = null;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  main.replaceChildren();
  current = page;
  document.title = `${page.title} · facerec`;
  if (app.scope === "none") {
    const note = document.createElement("p");
    note.textContent = "Enter an API key to use this page.";
    main.append(note);
    app.askForKey();
    return;
  }
  leaving = (await page.render(main, app)) || null;
  if (current === page) main.focus();
}

keyDialog.addEventListener("close", async () => {
  if (keyDialog.returnValue !== "save") return;
  setApiKey(document.getElementById("key-input").value.trim());
  if ((await learnScope()) === "none") {
    app.askForKey("That key was not accepted. Enter a valid API key.");
    document.getElementById("key-error").textContent = "That key is not valid.";
    return;
  }
  show();
});
document.getElementById("key-forget").addEventListener("click", async () => {
  setApiKey("");
  keyDialog.close();
  await learnScope();
  show();
});
document.getElementById("key-button").addEventListener("click", () => app.askForKey());
whenUnauthorized(() => {
  if (app.scope !== "open") app.askForKey("This needs a valid API key.");
});
window.addEventListener("hashchange", show);

await learnScope();
show();
