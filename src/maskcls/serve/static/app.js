// The maskcls page: send a photo to POST /predict and draw the answer. No libraries, nothing from outside.
"use strict";

const $ = (id) => document.getElementById(id);
const LABELS = {
  mask: { wear: "mask worn", incorrect: "worn incorrectly", not_wear: "no mask" },
  gender: { male: "male", female: "female" },
};

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  $("result").hidden = true;
  $("status").textContent = "No prediction.";
}

// One head's marginal probabilities; "best" marks the largest, "in-class" the predicted class's part (◆).
function drawBars(container, probabilities, names, inClass) {
  container.replaceChildren();
  const best = Object.entries(probabilities).reduce((a, b) => (b[1] > a[1] ? b : a))[0];
  for (const [key, p] of Object.entries(probabilities)) {
    const row = document.createElement("div");
    row.className = "bar" + (key === best ? " best" : "") + (key === inClass ? " in-class" : "");
    row.dataset.label = key;
    row.dataset.probability = p.toFixed(4);
    const name = document.createElement("span");
    name.className = "bar-name";
    name.textContent = ((names && names[key]) || key) + (key === inClass ? " ◆" : "");
    const track = document.createElement("span");
    track.className = "bar-track";
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style.width = (100 * p).toFixed(1) + "%";
    track.appendChild(fill);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = (100 * p).toFixed(1) + " %";
    row.append(name, track, value);
    container.appendChild(row);
  }
}

function showPrediction(answer) {
  $("error").hidden = true;
  $("class-id").textContent = answer["class"];
  $("class-name").textContent = answer.class_name;
  $("class-probability").textContent = "(" + (100 * answer.probability).toFixed(1) + " %)";
  drawBars($("bars-mask"), answer.heads.mask, LABELS.mask, answer.mask);
  drawBars($("bars-gender"), answer.heads.gender, LABELS.gender, answer.gender);
  drawBars($("bars-age"), answer.heads.age, null, answer.age_group);
  const top = $("top-classes");
  top.replaceChildren();
  for (const entry of answer.top_classes || []) {
    const item = document.createElement("li");
    item.dataset.class = entry["class"];
    item.textContent = entry.class_name + " (class " + entry["class"] + "): " + (100 * entry.probability).toFixed(1) + " %";
    top.appendChild(item);
  }
  $("meta").textContent = "model " + answer.model_id + " · " + answer.latency_ms.toFixed(0) + " ms on the server";
  $("result").hidden = false;
  $("status").textContent = "Prediction:";
}

async function predict(blob, name) {
  $("preview").src = URL.createObjectURL(blob);
  $("preview").hidden = false;
  $("drop-hint").hidden = true;
  $("status").textContent = "Asking the model…";
  $("error").hidden = true;
  const form = new FormData();
  form.append("file", blob, name || "photo");
  let response;
  try {
    response = await fetch("/predict", { method: "POST", body: form });
  } catch (err) {
    showError("The server could not be reached (" + err.message + ").");
    return;
  }
  let answer = null;
  try {
    answer = await response.json();
  } catch (err) {
    answer = null;
  }
  if (!response.ok) {
    const detail = answer && answer.detail ? answer.detail : "the server answered " + response.status;
    showError("This photo could not be classified: " + detail);
    return;
  }
  showPrediction(answer);
}

function pick(files) {
  if (!files || !files.length) return;
  predict(files[0], files[0].name);
}

$("file-input").addEventListener("change", (event) => pick(event.target.files));
const zone = $("drop-zone");
zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  zone.classList.remove("dragging");
  pick(event.dataTransfer.files);
});

// The webcam, where the browser offers it (a secure context: https or localhost).
if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
  $("camera-start").hidden = false;
  $("camera-start").addEventListener("click", async () => {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: true });
      $("camera-video").srcObject = stream;
      $("camera").hidden = false;
      $("camera-start").hidden = true;
    } catch (err) {
      showError("The camera is not available (" + err.message + ").");
    }
  });
  $("camera-shot").addEventListener("click", () => {
    const video = $("camera-video");
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob((blob) => predict(blob, "camera.jpg"), "image/jpeg", 0.92);
  });
}

fetch("/health")
  .then((response) => response.json())
  .then((health) => {
    $("model-line").textContent = "Model " + health.model_id + " (" + health.architecture + ", " + health.head + " head, "
      + health.folds.length + " fold(s), TTA " + health.tta + ") on " + health.engine + ".";
  })
  .catch(() => { $("model-line").textContent = "The model's health could not be read."; });
