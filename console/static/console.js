// pfrouter console: draws the routing-group map from /console/api/topology
// and keeps it live. Names come from configuration and mail, so text is
// only ever set with textContent, never parsed as markup.
"use strict";
(function () {
  var NS = "http://www.w3.org/2000/svg";
  var POLL_MS = 3000;

  function el(name, attrs, text) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  // routeConnectors adds, for each hop of the route (the relays, else
  // consecutive servers) between routing groups, the connector joining them (preferring one whose bridgeheads
  // are the two servers).
  function routeConnectors(topo, route) {
    var groupOf = {};
    topo.groups.forEach(function (g) { g.servers.forEach(function (s) { groupOf[s.name] = g.name; }); });
    var used = {};
    (route.connectors || []).forEach(function (n) { used[n] = true; });
    var hops = route.hops || [];
    if (hops.length === 0) {
      var servers = route.servers || [];
      for (var j = 0; j + 1 < servers.length; j++) { hops.push([servers[j], servers[j + 1]]); }
    }
    for (var i = 0; i < hops.length; i++) {
      var a = hops[i][0], b = hops[i][1], ga = groupOf[a], gb = groupOf[b];
      if (!ga || !gb || ga === gb) { continue; }
      var best = null;
      topo.connectors.forEach(function (c) {
        var joins = (c.a === ga && c.b === gb) || (c.a === gb && c.b === ga);
        if (!joins) { return; }
        var bh = c.bridgeheads_a.concat(c.bridgeheads_b);
        var score = (bh.indexOf(a) >= 0 ? 1 : 0) + (bh.indexOf(b) >= 0 ? 1 : 0) + (c.up ? 1 : 0);
        if (!best || score > best.score) { best = { name: c.name, score: score }; }
      });
      if (best) { used[best.name] = true; }
    }
    return used;
  }

  function layout(groups, W, H) {
    var pos = {}, n = groups.length, cx = W / 2, cy = H / 2;
    groups.forEach(function (g, i) {
      if (n === 1) { pos[g.name] = { x: cx, y: cy }; return; }
      if (n === 2) { pos[g.name] = { x: W * (i === 0 ? 0.25 : 0.75), y: cy }; return; }
      var ang = -Math.PI / 2 + 2 * Math.PI * i / n;
      pos[g.name] = { x: cx + Math.cos(ang) * W * 0.34, y: cy + Math.sin(ang) * H * 0.33 };
    });
    return pos;
  }

  function draw(svg, topo, route) {
    var W = 1000, H = 560;
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var onRoute = {};
    (route.servers || []).forEach(function (s) { onRoute[s] = true; });
    var usedConn = routeConnectors(topo, route);
    var pos = layout(topo.groups, W, H);
    var pairs = {};
    topo.connectors.forEach(function (c) {
      var key = [c.a, c.b].sort().join("\u0000");
      (pairs[key] = pairs[key] || []).push(c);
    });
    var edges = el("g", { "class": "edges" }), labels = el("g", { "class": "labels" });
    Object.keys(pairs).forEach(function (key) {
      var list = pairs[key];
      list.forEach(function (c, k) {
        var p = pos[c.a], q = pos[c.b];
        if (!p || !q) { return; }
        var mx = (p.x + q.x) / 2, my = (p.y + q.y) / 2;
        var dx = q.x - p.x, dy = q.y - p.y, len = Math.sqrt(dx * dx + dy * dy) || 1;
        var off = (k - (list.length - 1) / 2) * 90;
        if (c.a > c.b) { off = -off; }
        var qx = mx - dy / len * off, qy = my + dx / len * off;
        var cls = "edge " + (c.up ? "up" : "down") + (usedConn[c.name] ? " route" : "");
        var path = el("path", { d: "M" + p.x + "," + p.y + " Q" + qx + "," + qy + " " + q.x + "," + q.y, "class": cls, id: "edge-" + c.name });
        path.appendChild(el("title", {}, c.name + " cost " + c.cost + (c.up ? " up" : " down" + (c.cause ? ": " + c.cause : ""))));
        edges.appendChild(path);
        var lx = (mx + qx) / 2, ly = (my + qy) / 2;
        var t = el("text", { x: lx, y: ly, "class": "elabel " + (c.up ? "up" : "down"), "text-anchor": "middle", "data-connector": c.name });
        t.appendChild(el("tspan", { x: lx, dy: "0" }, c.name + " · " + c.cost + (c.one_way ? " →" : "")));
        if (!c.up) { t.appendChild(el("tspan", { x: lx, dy: "1.2em" }, "down" + (c.cause ? ": " + c.cause : ""))); }
        labels.appendChild(t);
      });
    });
    svg.appendChild(edges);
    var nodes = el("g", { "class": "groups" });
    topo.groups.forEach(function (g) {
      var p = pos[g.name], w = 190, h = 34 + 22 * Math.max(1, g.servers.length);
      var grp = el("g", { "class": "group", id: "group-" + g.name });
      grp.appendChild(el("rect", { x: p.x - w / 2, y: p.y - h / 2, width: w, height: h, rx: 10 }));
      grp.appendChild(el("text", { x: p.x, y: p.y - h / 2 + 20, "class": "gname", "text-anchor": "middle" }, g.name));
      g.servers.forEach(function (s, i) {
        var cls = "server " + (s.down ? "down" : "up") + (onRoute[s.name] ? " route" : "");
        var label = s.name + (s.bridgehead ? " \u21c4" : "") + (s.self ? " \u2605" : "") + (s.down ? " (down" + (s.cause ? ": " + s.cause : "") + ")" : "");
        grp.appendChild(el("text", { x: p.x, y: p.y - h / 2 + 42 + 22 * i, "class": cls, "text-anchor": "middle", "data-server": s.name }, label));
      });
      nodes.appendChild(grp);
    });
    svg.appendChild(nodes);
    svg.appendChild(labels);
  }

  function cell(tr, text) {
    var td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
  }

  // fillTables keeps the topology page's tables as live as the map.
  function fillTables(topo) {
    var tb = document.querySelector("#connectors tbody");
    if (tb) {
      while (tb.firstChild) { tb.removeChild(tb.firstChild); }
      topo.connectors.forEach(function (c) {
        var tr = document.createElement("tr");
        tr.className = c.up ? "up" : "down";
        cell(tr, c.name);
        cell(tr, c.a + (c.one_way ? " \u2192 " : " \u2194 ") + c.b);
        cell(tr, String(c.cost));
        cell(tr, c.up ? "up" : "down" + (c.cause ? ": " + c.cause : ""));
        cell(tr, c.bridgeheads_a.join(", ") + " | " + c.bridgeheads_b.join(", "));
        cell(tr, (c.changed_by || "") + " " + (c.changed_at || ""));
        tb.appendChild(tr);
      });
    }
    var sb = document.querySelector("#servers tbody");
    if (sb) {
      while (sb.firstChild) { sb.removeChild(sb.firstChild); }
      topo.groups.forEach(function (g) {
        g.servers.forEach(function (s) {
          var tr = document.createElement("tr");
          tr.className = s.down ? "down" : "up";
          cell(tr, g.name);
          cell(tr, s.name + (s.bridgehead ? " \u21c4" : "") + (s.self ? " \u2605" : ""));
          cell(tr, s.down ? "down" + (s.cause ? ": " + s.cause : "") : "up");
          sb.appendChild(tr);
        });
      });
    }
  }

  function start() {
    var svg = document.getElementById("map");
    if (!svg) { return; }
    var route = { servers: [], connectors: [] };
    try { route = JSON.parse(svg.getAttribute("data-route") || "{}"); } catch (e) { /* no route drawn */ }
    var version = document.getElementById("lsversion"), state = document.getElementById("mapstate");
    function poll() {
      fetch("/console/api/topology", { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) {
          if (r.status === 401) { window.location.href = "/console/login"; return null; }
          if (!r.ok) { throw new Error("HTTP " + r.status); }
          return r.json();
        })
        .then(function (topo) {
          if (!topo) { return; }
          draw(svg, topo, route);
          fillTables(topo);
          version.textContent = String(topo.version);
          state.textContent = topo.error ? "(" + topo.error + ")" : "· live, updated " + new Date().toLocaleTimeString();
          svg.setAttribute("data-version", String(topo.version));
        })
        .catch(function (e) { state.textContent = "(cannot update: " + e.message + ")"; });
    }
    poll();
    setInterval(poll, POLL_MS);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
