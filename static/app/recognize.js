// Recognise a photo: drop it, pick a file, paste it, or give a URL; every face gets its box and
// name over the picture, and its confidence and candidates on hover, focus or tap.
import { call } from "./api.js";
import { drawFaces, element, listFaces } from "./draw.js";

export const title = "Recognise";

export function render(main, app) {
  const input = element("input", { type: "file", id: "photo-file", accept: "image/*" });
  const url = element("input", { type: "url", id: "photo-url", placeholder: "https://...", size: 40 });
  const drop = element("div", { className: "drop", id: "drop" },
    element("p", {}, "Drop a photo here, paste one (Ctrl+V), or choose a file:"),
    element("label", { htmlFor: "photo-file", className: "visually-hidden" }, "Photo file"), input);
  const form = element("form", { className: "row", id: "url-form" },
    element("label", { htmlFor: "photo-url" }, "Or a URL"), url,
    element("button", { type: "submit" }, "Recognise"));
  const status = element("p", { id: "recognize-status", className: "hint", role: "status" });
  const stage = element("div", { className: "stage", id: "photo-stage" });
  const list = element("ul", { className: "faces-list", id: "faces", "aria-label": "Faces found" });
  list.setAttribute("aria-label", "Faces found");
  main.append(element("h1", {}, "Recognise a photo"),
    element("section", { className: "panel" }, drop, form), status, stage, list);

  async function recognise(file, address) {
    status.textContent = "Recognising…";
    status.className = "hint";
    stage.replaceChildren();
    list.replaceChildren();
    try {
      const answer = file
        ? await call("POST", "/recognize", { body: file, type: file.type || "application/octet-stream" })
        : await call("GET", "/recognize", { query: { image_url: address } });
      const picture = element("img", {
        alt: `The photo, with ${answer.faces.length} face${answer.faces.length === 1 ? "" : "s"} marked`,
        src: file ? URL.createObjectURL(file) : address,
      });
      picture.referrerPolicy = "no-referrer";
      stage.append(picture);
      const faces = answer.faces.map((face, index) => ({ key: index, ...face }));
      drawFaces(stage, faces, answer.image);
      listFaces(list, faces);
      const named = faces.filter((face) => face.name).length;
      status.textContent = faces.length
        ? `${faces.length} face${faces.length === 1 ? "" : "s"}: ${named} named, ${faces.length - named} unknown.`
        : "No face was found in this photo.";
    } catch (error) {
      status.textContent = error.message;
      status.className = "error";
    }
  }

  input.addEventListener("change", () => input.files[0] && recognise(input.files[0]));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (url.value) recognise(null, url.value);
  });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) recognise(file);
  });
  const paste = (event) => {
    const file = [...event.clipboardData.files].find((one) => one.type.startsWith("image/"));
    if (file) recognise(file);
  };
  document.addEventListener("paste", paste);
  return () => document.removeEventListener("paste", paste);
}
