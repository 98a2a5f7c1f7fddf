// The service's HTTP API, for the pages: the key (kept in this tab's session storage, sent as
// X-API-Key, never in a URL), errors as sentences, and the two answers that never end (the
// event feed and a live view) read with fetch, which can send the key (EventSource and <img>
// cannot).

const KEY = "facerec.apiKey";

export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setApiKey(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

function headers(extra = {}) {
  const sent = { ...extra };
  const key = apiKey();
  if (key) sent["X-API-Key"] = key;
  return sent;
}

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super(sentence(status, body, retryAfter));
    this.status = status;
    this.body = body || {};
    const codes = Object.values(this.body.errors || {});
    this.code = codes[0] || "";
  }
}

// What each refusal means, in words. Anything else says the code and its detail.
const SENTENCES = {
  unsupported_image: "That file is not an image this service reads (JPEG, PNG, GIF, WebP, BMP or TIFF).",
  image_truncated: "That image is cut short: the file is incomplete.",
  unsupported_media_type: "That kind of file cannot be sent here.",
  image_too_large: "The image is too large",
  image_too_complex: "The image would take too long to decode",
  image_fetch_failed: "The image could not be fetched from that address.",
  url_not_allowed: "That address is not allowed: give an http or https URL.",
  no_face: "No face was found in the image.",
  multiple_faces: "There is more than one face in the image: use a photo of one person.",
  small_face: "The face is too small: come closer, or use a larger photo.",
  blurry: "The face is blurred: hold still, or use a sharper photo.",
  extreme_pose: "The face is turned too far: look more towards the camera.",
  missing_api_key: "This needs an API key.",
  invalid_api_key: "That API key is not valid.",
  insufficient_scope: "This needs an admin key.",
  rate_limited: "Too many requests",
  unknown_person: "Nobody of that name is enrolled.",
  invalid_name: "That name is not allowed",
  name_looks_like_another: "That name looks like another person's",
  name_taken: "That name is taken.",
  destination_not_allowed: "That address is outside the networks this service may reach",
  invalid_destination: "That is not a source this service reads",
  store_unavailable: "The service cannot reach its store right now; try again.",
  too_many_sessions: "Too many webcams are connected right now; try again in a moment.",
  unknown_event: "That face is no longer in the list.",
};

export function sentence(status, body, retryAfter) {
  const errors = (body && body.errors) || {};
  const details = (body && body.detail) || {};
  const field = Object.keys(errors)[0];
  const code = field ? errors[field] : "";
  const detail = field ? details[field] : "";
  let text = SENTENCES[code];
  if (!text) {
    if (status >= 500) return "The service had a problem; try again.";
    text = code ? `Refused (${code.replaceAll("_", " ")})` : `Refused (HTTP ${status})`;
  }
  if (code === "rate_limited" && retryAfter) return `${text}: wait ${retryAfter} s and try again.`;
  if (detail && !text.endsWith(".")) return `${text}: ${detail}.`;
  return text.endsWith(".") ? text : `${text}.`;
}

// Calls that ask for a key send the user to the key dialog (main.js sets this).
let onUnauthorized = () => {};
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

export async function call(method, path, { json, body, type, query, signal } = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const extra = {};
  let sent = body;
  if (json !== undefined) {
    extra["Content-Type"] = "application/json";
    sent = JSON.stringify(json);
  } else if (type) {
    extra["Content-Type"] = type;
  }
  const response = await fetch(url, { method, headers: headers(extra), body: sent, signal });
  if (response.status === 401) onUnauthorized();
  const kind = response.headers.get("Content-Type") || "";
  const data = kind.includes("json") ? await response.json() : await response.blob();
  if (!response.ok) throw new ApiError(response.status, data, response.headers.get("Retry-After"));
  return data;
}

// What the key may do: admin, read, open (no keys), or none.
export async function access() {
  try {
    return (await call("GET", "/access")).scope;
  } catch (error) {
    if (error.status === 401) return "none";
    throw error;
  }
}

// The event feed (Server-Sent Events) through fetch: onEvent(event) for each, until aborted.
// It reconnects after a drop, resuming after the last event it saw.
export async function follow(path, onEvent, signal) {
  let last = null;
  while (!signal.aborted) {
    try {
      const response = await fetch(path, {
        headers: headers(last ? { "Last-Event-ID": String(last) } : {}), signal,
      });
      if (!response.ok) throw new ApiError(response.status, await response.json());
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block.split("\n").filter((line) => line.startsWith("data: "));
          if (data.length) {
            const event = JSON.parse(data.map((line) => line.slice(6)).join("\n"));
            last = event.id;
            onEvent(event);
          }
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status < 500 && error.status !== 429) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

// A live view (multipart/x-mixed-replace of JPEGs) through fetch: onFrame(blob) for each.
export async function watch(path, onFrame, signal) {
  const response = await fetch(path, { headers: headers(), signal });
  if (!response.ok) throw new ApiError(response.status, await response.json());
  const reader = response.body.getReader();
  let buffer = new Uint8Array(0);
  const append = (chunk) => {
    const joined = new Uint8Array(buffer.length + chunk.length);
    joined.set(buffer);
    joined.set(chunk, buffer.length);
    buffer = joined;
  };
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    append(value);
    for (;;) {
      const head = decoder.decode(buffer.slice(0, Math.min(buffer.length, 512)));
      const blank = head.indexOf("\r\n\r\n");
      const length = /Content-Length: (\d+)/i.exec(head);
      if (blank < 0 || !length) break;
      const start = new TextEncoder().encode(head.slice(0, blank + 4)).length;
      const end = start + Number(length[1]);
      if (buffer.length < end + 2) break;
      onFrame(new Blob([buffer.slice(start, end)], { type: "image/jpeg" }));
      buffer = buffer.slice(end + 2);
    }
  }
}
