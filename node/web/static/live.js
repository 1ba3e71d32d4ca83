// Live updates for the dashboard: records appear as the node stores them, without a reload.
// The pages are complete without this script; it only listens to GET /api/v1/events (Server-
// Sent Events) and prepends each new record to a list marked data-live ("all", or a project
// id for that project's ledger). Peer text is set with textContent only, never as HTML.
"use strict";
(function () {
  const list = document.querySelector("[data-live]");
  if (!list || !window.EventSource) return;
  const scope = list.getAttribute("data-live");
  const url = scope === "all" ? "/api/v1/events" : "/api/v1/events?project=" + encodeURIComponent(scope);
  const note = document.querySelector(".live-note");
  if (note) note.hidden = false;

  function link(href, text, cls) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    if (cls) a.className = cls;
    return a;
  }
  function shortPeer(peer) { return "…" + peer.slice(-8); }
  function when(ts) { return new Date(ts).toISOString().slice(0, 16).replace("T", " ") + " UTC"; }

  function activityItem(r) {
    const li = document.createElement("li");
    li.className = "fresh";
    li.setAttribute("data-record", r.id);
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = r.kind;
    li.append(kind, " ", link("/records/" + r.id, r.title || r.id.slice(0, 12), "rec"));
    if (r.project) li.append(" in ", link("/projects/" + r.project, r.project.slice(0, 12)));
    li.append(" by ", link("/people/" + r.author, shortPeer(r.author), "person"));
    const time = document.createElement("time");
    time.dateTime = new Date(r.ts).toISOString();
    time.textContent = " " + when(r.ts);
    li.append(time);
    return li;
  }

  function ledgerRow(r) {
    const tr = document.createElement("tr");
    tr.className = "fresh";
    tr.setAttribute("data-record", r.id);
    const cells = [when(r.ts), null, "new", null, "", ""];
    cells.forEach(function (text, i) {
      const cell = document.createElement(i === 1 ? "th" : "td");
      if (i === 1) {
        cell.scope = "row";
        cell.append(link("/records/" + r.id, r.title || r.id.slice(0, 12), "rec"));
      } else if (i === 3) {
        cell.append(link("/people/" + r.author, shortPeer(r.author), "person"));
      } else {
        cell.textContent = text;
      }
      tr.append(cell);
    });
    return tr;
  }

  const source = new EventSource(url);
  source.addEventListener("open", function () {
    document.documentElement.setAttribute("data-live-stream", "open");
  });
  source.addEventListener("error", function () {
    document.documentElement.setAttribute("data-live-stream", "reconnecting");
  });
  source.addEventListener("record", function (event) {
    let r;
    try { r = JSON.parse(event.data); } catch (e) { return; }
    if (document.querySelector('[data-record="' + r.id + '"]')) return;
    if (list.tagName === "TBODY") {
      if (r.kind !== "contribution") return;
      list.prepend(ledgerRow(r));
    } else {
      const empty = list.querySelector(".empty");
      if (empty) empty.remove();
      list.prepend(activityItem(r));
    }
  });
})();
