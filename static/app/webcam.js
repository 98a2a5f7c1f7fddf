// The browser's webcam, recognised live: frames go to a tracking session on the server one at a
// time (the next leaves as soon as the last answer arrives), and the tracked boxes and names are
// drawn over the video. Names are voted on by the server's tracker, so they do not flicker, and
// known faces are not encoded again at every frame. Also: "who is this?" for a face in view, and
// enrolment from a guided burst of webcam shots checked against the quality gate.
import { call } from "./api.js";
import { drawFaces, element, percent } from "./draw.js";

export const title = "Webcam";
const SIDE = 640; // frames are sent at most this wide
const STEPS = ["Look straight at the camera", "Turn your head slightly to the left",
  "Turn your head slightly to the right"];

// Numbers the page shows, also read by scripts/bench_web.py.
const stats = (window.facerecWebcam = { answers: [], delays: [], faces: [] });

export function render(main, app) {
  const video = element("video", { id: "webcam-video", muted: true, autoplay: true, playsInline: true });
  video.setAttribute("aria-label", "Your camera, with the faces in view marked");
  const stage = element("div", { className: "stage", id: "webcam-stage" }, video);
  const toggle = element("button", { type: "button", id: "webcam-toggle" }, "Stop");
  const numbers = element("p", { className: "stats", id: "webcam-stats", role: "status" }, "Starting the camera…");
  const inView = element("ul", { className: "faces-list", id: "webcam-faces" });
  inView.setAttribute("aria-label", "Faces in view");
  const burst = enrolPanel(app, video);
  main.append(element("h1", {}, "Webcam"), element("div", { className: "row" }, toggle, numbers),
    stage, element("h2", {}, "Faces in view"), inView, burst);

  const canvas = document.createElement("canvas");
  let running = false;
  let session = null;
  let stream = null;
  const asked = new Map(); // track -> the name being enrolled for it

  async function start() {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    } catch (error) {
      numbers.textContent = `The camera cannot be used: ${error.message}`;
      return;
    }
    video.srcObject = stream;
    await video.play().catch(() => {});
    running = true;
    toggle.textContent = "Stop";
    loop();
  }

  function stop() {
    running = false;
    toggle.textContent = "Start";
    if (stream) for (const track of stream.getTracks()) track.stop();
    stream = null;
    if (session) call("DELETE", `/sessions/${session}`).catch(() => {});
    session = null;
  }

  async function loop() {
    while (running) {
      if (!video.videoWidth) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      try {
        if (!session) session = (await call("POST", "/sessions")).id;
        const scale = Math.min(1, SIDE / video.videoWidth);
        canvas.width = Math.round(video.videoWidth * scale);
        canvas.height = Math.round(video.videoHeight * scale);
        canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
        const frame = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.8));
        const sent = performance.now();
        const answer = await call("POST", `/sessions/${session}/frames`, { body: frame, type: "image/jpeg" });
        if (!running) return;
        show(answer, performance.now() - sent, { width: canvas.width, height: canvas.height });
      } catch (error) {
        if (error.code === "unknown_session") { session = null; continue; }
        numbers.textContent = error.message;
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
  }

  function show(answer, delay, size) {
    const now = performance.now();
    stats.answers.push(now);
    stats.delays.push(delay);
    while (stats.answers.length && now - stats.answers[0] > 2000) stats.answers.shift();
    if (stats.delays.length > 50) stats.delays.shift();
    const faces = answer.faces.map((face) => ({ key: face.track, ...face }));
    stats.faces = faces;
    drawFaces(stage, faces, size);
    const fps = stats.answers.length / 2;
    const median = [...stats.delays].sort((a, b) => a - b)[Math.floor(stats.delays.length / 2)];
    numbers.textContent = `${fps.toFixed(1)} updates a second · ${Math.round(median)} ms a frame · ${faces.length} in view`;
    listInView(faces);
  }

  function listInView(faces) {
    const tracks = new Set(faces.map((face) => String(face.track)));
    for (const item of inView.querySelectorAll("li")) {
      if (!tracks.has(item.dataset.track) && !item.contains(document.activeElement)) item.remove();
    }
    for (const face of faces) {
      let item = inView.querySelector(`li[data-track="${face.track}"]`);
      if (!item) {
        item = element("li", {}, element("span", { className: "who" }));
        item.dataset.track = face.track;
        inView.append(item);
      }
      item.querySelector(".who").textContent = face.name
        ? `${face.name} (${percent(face.confidence)})` : `Unknown face (track ${face.track})`;
      const form = item.querySelector("form");
      if (!face.name && app.admin && !form && !asked.has(face.track)) item.append(whoIsThis(face.track, item));
      if (face.name && form && !form.contains(document.activeElement)) form.remove();
    }
  }

  function whoIsThis(track, item) {
    const id = `who-${track}`;
    const input = element("input", { id, name: "name", required: true, autocomplete: "off" });
    const form = element("form", { className: "row" },
      element("label", { htmlFor: id }, "Who is this?"), input,
      element("button", { type: "submit" }, "Enrol"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      asked.set(track, input.value);
      try {
        const done = await call("POST", `/sessions/${session}/tracks/${track}/enroll`, { json: { name: input.value } });
        app.toast(`${done.name} enrolled: ${done.face_count} face${done.face_count === 1 ? "" : "s"} now.`);
        form.remove();
      } catch (error) {
        asked.delete(track);
        app.toast(error.message, true);
      }
    });
    return form;
  }

  toggle.addEventListener("click", () => (running ? stop() : start()));
  start();
  return stop;
}

// Enrol from the webcam: a guided burst of shots, each checked with /detect against the quality
// gate before it is kept, then enrolled one by one.
function enrolPanel(app, video) {
  const name = element("input", { id: "burst-name", required: true, autocomplete: "off" });
  const begin = element("button", { type: "submit", id: "burst-start" }, "Take the shots");
  const guide = element("p", { id: "burst-guide", role: "status", className: "hint" });
  const shots = element("div", { className: "shots", id: "burst-shots" });
  const form = element("form", {}, element("div", { className: "row" },
    element("label", { htmlFor: "burst-name" }, "Name"), name, begin));
  const panel = element("section", { className: "panel", id: "burst" },
    element("h2", {}, "Enrol someone with the webcam"),
    element("p", { className: "hint" }, `${STEPS.length} shots, each checked for size, sharpness and pose before it is kept. More photos of a person make recognition surer.`),
    form, guide, shots);
  panel.dataset.admin = "";
  panel.hidden = !app.admin;

  async function shoot() {
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    begin.disabled = true;
    shots.replaceChildren();
    const kept = [];
    try {
      for (const [number, step] of STEPS.entries()) {
        let shot = null;
        for (let attempt = 0; attempt < 20 && !shot; attempt += 1) {
          guide.textContent = `Shot ${number + 1} of ${STEPS.length}: ${step}.`;
          await new Promise((resolve) => setTimeout(resolve, 400));
          if (!video.videoWidth) continue;
          const photo = await shoot();
          const seen = await call("POST", "/detect", { body: photo, type: "image/jpeg" });
          const faces = seen.faces;
          const quality = faces.length === 1 ? faces[0].quality : null;
          if (quality && quality.enrollable) shot = { photo, quality };
          else guide.textContent = faces.length === 0 ? `No face in view. ${step}.`
            : faces.length > 1 ? "Only one person in view, please."
              : `Not yet: ${quality.problems.join(", ").replaceAll("_", " ")}. ${step}.`;
        }
        const figure = element("figure", {}, element("img", {
          src: shot ? URL.createObjectURL(shot.photo) : "", alt: `Shot ${number + 1}: ${step}`,
          className: shot ? "good" : "bad",
        }), element("figcaption", {}, shot ? `yaw ${Math.round(shot.quality.yaw ?? 0)}°` : "no usable shot"));
        shots.append(figure);
        if (shot) kept.push(shot.photo);
      }
      if (!kept.length) throw new Error("No shot passed the quality check; try again with more light.");
      guide.textContent = `Enrolling ${kept.length} shots…`;
      let last = null;
      for (const photo of kept) {
        last = await call("POST", "/enroll", { body: photo, type: "image/jpeg", query: { name: name.value } });
      }
      guide.textContent = `${last.name} enrolled: ${last.face_count} faces now.`;
      app.toast(guide.textContent);
    } catch (error) {
      guide.textContent = error.message;
      guide.className = "error";
    } finally {
      begin.disabled = false;
    }
  });
  return panel;
}
