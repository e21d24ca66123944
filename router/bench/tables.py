#!/usr/bin/env python3
"""Writes the routing tables the memory measurements use (router/bench/run.sh and memory.sh)
into DIR: one.yaml (1 route) and many.yaml (1,000 routes, each with a host name, a rule
matching a path and a header, and a 90/10 split over two backends of its own, 2,000 in all;
the table router/tests/memory.rs counts). Upstreams: 127.0.0.1:18081 and :18082."""
import sys

out = sys.argv[1]
with open(f"{out}/one.yaml", "w") as f:
    f.write('routes:\n- name: one/route\n  rules:\n  - backendRefs: [{name: a}]\n'
            'backends:\n- {name: a, endpoints: ["127.0.0.1:18081"]}\n')
routes, backends = [], []
for i in range(1000):
    routes.append(f"- name: ns/route-{i}\n  hostnames: [svc-{i}.example]\n  rules:\n  - matches: [{{path: {{value: /api}}, headers: [{{name: x-canary, value: insider}}]}}]\n    backendRefs: [{{name: c-{i}}}]\n  - backendRefs: [{{name: p-{i}, weight: 90}}, {{name: c-{i}, weight: 10}}]\n")
    backends.append(f"- {{name: p-{i}, endpoints: ['127.0.0.1:18081']}}\n- {{name: c-{i}, role: canary, endpoints: ['127.0.0.1:18082']}}\n")
with open(f"{out}/many.yaml", "w") as f:
    f.write("routes:\n" + "".join(routes) + "backends:\n" + "".join(backends))
