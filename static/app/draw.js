// Faces drawn over a picture or a video: a box per face (green with its name, red when
// unknown), placed in percent of the image's own pixels so that it follows the displayed
// size. Each box is a button: hover, focus or tap shows the confidence and the candidates.

export function percent(confidence) {
  return confidence === null || confidence === undefined ? "" : `${Math.round(confidence * 100)}%`;
}

// Place (or move) the boxes of `faces` ({key, box, name, confidence, candidates}) over `stage`,
// an element holding the <img> or <video>; boxes of keys no longer there are removed.
export function drawFaces(stage, faces, size, extra = () => null) {
  const kept = new Set();
  for (const face of faces) {
    const key = String(face.key);
    kept.add(key);
    let box = stage.querySelector(`.box[data-key="${CSS.escape(key)}"]`);
    if (!box) {
      box = document.createElement("button");
      box.type = "button";
      box.className = "box";
      box.dataset.key = key;
      box.append(Object.assign(document.createElement("span"), { className: "label" }));
      box.append(Object.assign(document.createElement("span"), { className: "more" }));
      box.addEventListener("click", () => box.classList.toggle("open"));
      stage.append(box);
    }
    const { top, right, bottom, left } = face.box;
    Object.assign(box.style, {
      left: `${(left / size.width) * 100}%`, top: `${(top / size.height) * 100}%`,
      width: `${((right - left) / size.width) * 100}%`,
      height: `${((bottom - top) / size.height) * 100}%`,
    });
    const named = face.name !== null && face.name !== undefined;
    box.classList.toggle("known", named);
    const label = named ? `${face.name} ${percent(face.confidence)}` : "unknown";
    box.querySelector(".label").textContent = label;
    box.setAttribute("aria-label", named
      ? `${face.name}, confidence ${percent(face.confidence)}` : "An unknown face");
    const more = box.querySelector(".more");
    more.replaceChildren(details(face));
    const added = extra(face);
    if (added) more.append(added);
  }
  for (const box of stage.querySelectorAll(".box")) {
    if (!kept.has(box.dataset.key)) box.remove();
  }
}

function details(face) {
  const part = document.createDocumentFragment();
  const head = document.createElement("strong");
  head.textContent = face.name ?? "Unknown";
  part.append(head);
  if (face.confidence !== null && face.confidence !== undefined) {
    part.append(` · confidence ${percent(face.confidence)}`);
  }
  if (face.candidates && face.candidates.length) {
    const list = document.createElement("ol");
    for (const candidate of face.candidates) {
      const item = document.createElement("li");
      item.textContent = `${candidate.name} (distance ${candidate.distance.toFixed(2)})`;
      list.append(item);
    }
    part.append(list);
  }
  return part;
}

// A list of the faces under the picture, for screen readers and keyboards alike.
export function listFaces(list, faces) {
  list.replaceChildren();
  for (const face of faces) {
    const item = document.createElement("li");
    item.textContent = face.name
      ? `${face.name}, confidence ${percent(face.confidence)}`
      : "An unknown face";
    if (face.candidates && face.candidates.length && !face.name) {
      item.textContent += ` (nearest: ${face.candidates.map((c) => c.name).join(", ")})`;
    }
    list.append(item);
  }
}

export function element(tag, properties = {}, ...children) {
  const made = Object.assign(document.createElement(tag), properties);
  made.append(...children);
  return made;
}
