// Zoom and pan for the dataflow graph. Without this script the SVG still fits the region
// (its viewBox scales it); with it, the view can be zoomed and moved by wheel, drag, the
// buttons, or the keyboard: + and - zoom, the arrow keys pan, 0 fits the whole graph.
(function () {
  "use strict";
  const MIN_READABLE = 0.75; // below this scale 12px labels get hard to read: start zoomed in
  const STEP = 1.25;

  function setUp(region) {
    const svg = region.querySelector("svg.graph");
    if (!svg || region.dataset.zoomReady) return;
    region.dataset.zoomReady = "1";
    const full = svg.viewBox.baseVal;
    const whole = { x: full.x, y: full.y, w: full.width, h: full.height };
    let view = { ...whole };
    svg.setAttribute("width", "100%");
    svg.setAttribute("height", "100%");
    region.classList.add("zoomable");

    function apply() {
      svg.setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`);
    }
    function scale() {
      return Math.min(region.clientWidth / view.w, region.clientHeight / view.h);
    }
    function zoom(factor, cx, cy) {
      // cx, cy: the point kept in place, in graph units (the view's centre by default)
      const x = cx === undefined ? view.x + view.w / 2 : cx;
      const y = cy === undefined ? view.y + view.h / 2 : cy;
      const w = Math.min(Math.max(view.w / factor, 40), whole.w * 4);
      const h = (w * view.h) / view.w;
      view = { x: x - ((x - view.x) * w) / view.w, y: y - ((y - view.y) * h) / view.h, w, h };
      apply();
    }
    function pan(dx, dy) {
      view.x += dx * view.w;
      view.y += dy * view.h;
      apply();
    }
    function fit() {
      // the region's aspect ratio, so that the whole graph shows and nothing is stretched
      const ratio = region.clientHeight / Math.max(region.clientWidth, 1);
      const w = Math.max(whole.w, whole.h / ratio);
      view = { x: whole.x - (w - whole.w) / 2, y: whole.y, w, h: w * ratio };
      apply();
    }
    function size() {
      // as tall as the graph drawn at a readable scale needs, within three quarters of the window
      const drawn = whole.h * Math.min(1, Math.max(region.clientWidth / whole.w, MIN_READABLE));
      region.style.height = `${Math.round(Math.max(160, Math.min(window.innerHeight * 0.75, drawn + 8)))}px`;
    }
    function startReadable() {
      size();
      fit();
      if (scale() >= MIN_READABLE) return;
      // too small to read: show a readable part, around the focused or selected node if there
      // is one, else where the lineage starts (left, top)
      const w = region.clientWidth / MIN_READABLE;
      const h = region.clientHeight / MIN_READABLE;
      const mark = svg.querySelector(".node.focused .shape, .node.selected .shape");
      let x = whole.x;
      let y = whole.y;
      if (mark) {
        const box = mark.getBBox();
        x = box.x + box.width / 2 - w / 2;
        y = box.y + box.height / 2 - h / 2;
      }
      x = Math.max(whole.x, Math.min(x, whole.x + whole.w - w));
      y = h >= whole.h ? whole.y : Math.max(whole.y, Math.min(y, whole.y + whole.h - h));
      view = { x, y, w, h };
      apply();
    }

    function point(event) {
      const rect = svg.getBoundingClientRect();
      return {
        x: view.x + ((event.clientX - rect.left) / rect.width) * view.w,
        y: view.y + ((event.clientY - rect.top) / rect.height) * view.h,
      };
    }
    region.addEventListener("wheel", (event) => {
      if (!event.ctrlKey && !event.metaKey && Math.abs(event.deltaX) > Math.abs(event.deltaY)) return;
      event.preventDefault();
      const p = point(event);
      zoom(event.deltaY < 0 ? STEP : 1 / STEP, p.x, p.y);
    }, { passive: false });
    let drag = null;
    region.addEventListener("pointerdown", (event) => {
      if (event.button !== 0 || event.target.closest("a")) return;
      drag = { x: event.clientX, y: event.clientY };
      region.setPointerCapture(event.pointerId);
    });
    region.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const rect = svg.getBoundingClientRect();
      view.x -= ((event.clientX - drag.x) / rect.width) * view.w;
      view.y -= ((event.clientY - drag.y) / rect.height) * view.h;
      drag = { x: event.clientX, y: event.clientY };
      apply();
    });
    region.addEventListener("pointerup", () => { drag = null; });
    region.addEventListener("keydown", (event) => {
      const keys = {
        "+": () => zoom(STEP), "=": () => zoom(STEP), "-": () => zoom(1 / STEP),
        "0": fit, ArrowLeft: () => pan(-0.1, 0), ArrowRight: () => pan(0.1, 0),
        ArrowUp: () => pan(0, -0.1), ArrowDown: () => pan(0, 0.1),
      };
      const act = keys[event.key];
      if (!act || event.target.closest("a") && event.key.startsWith("Arrow")) return;
      event.preventDefault();
      act();
    });
    region.addEventListener("focusin", (event) => {
      // a node reached with Tab is brought into view, the zoom kept
      const shape = event.target.closest && event.target.closest("a") &&
        event.target.closest("a").querySelector(".shape");
      if (!shape) return;
      const box = shape.getBBox();
      const inside = box.x >= view.x && box.x + box.width <= view.x + view.w &&
        box.y >= view.y && box.y + box.height <= view.y + view.h;
      if (inside) return;
      view.x = box.x + box.width / 2 - view.w / 2;
      view.y = box.y + box.height / 2 - view.h / 2;
      apply();
    });
    const controls = region.parentElement.querySelector(".zoom-controls");
    if (controls) {
      controls.hidden = false;
      controls.querySelector("[data-zoom=in]").addEventListener("click", () => zoom(STEP));
      controls.querySelector("[data-zoom=out]").addEventListener("click", () => zoom(1 / STEP));
      controls.querySelector("[data-zoom=fit]").addEventListener("click", fit);
    }
    startReadable();
    // bench/graph_browser.py reads this: how long the page took until the graph was usable
    if (window.performance && performance.mark) performance.mark("coplane-graph-ready");
    window.addEventListener("resize", () => {
      view.h = (view.w * region.clientHeight) / Math.max(region.clientWidth, 1);
      apply();
    });
  }

  function setUpAll() {
    document.querySelectorAll(".graph-scroll").forEach(setUp);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setUpAll);
  else setUpAll();
  document.addEventListener("htmx:afterSettle", setUpAll);
})();
