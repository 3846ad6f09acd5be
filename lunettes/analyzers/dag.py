"""The analyzer DAG: built from pipeline.yaml, checked before any event is read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx

from lunettes import registry
from lunettes.analyzers.base import Analyzer, Inputs, defined_by, references_of, roles_of
from lunettes.config.errors import ConfigError, Section, suggest
from lunettes.model.results import Results, ResultSchema
from lunettes.model.timeline import PodTimeline
from lunettes.registry import BuildContext


@dataclass(frozen=True)
class Node:
    """One analyzer of the DAG: its name, type and inputs."""

    name: str
    type: str
    needs: tuple[str, ...]


def read_nodes(section: Section) -> list[Node]:
    """The analyzers section (``name: {type:, needs: [...], ...}``) as nodes; a missing
    ``type`` defaults to the name before any ``/`` (``stages/strict`` is of type stages)."""
    nodes = []
    for name in section.data:
        sub = section.sub(str(name))
        sub.get("type", None, str)
        needs = sub.get("needs", [], list)
        if not all(isinstance(n, str) for n in needs):
            sub.problem("needs", "expected a list of analyzer names")
            needs = []
        nodes.append(Node(str(name), sub.data.get("type") or str(name).split("/")[0],
                          tuple(needs)))
    return nodes


def check_graph(nodes: list[Node], path: str) -> list[str]:
    """Problems with the graph itself: missing inputs and cycles (as ``a -> b -> a``)."""
    problems = []
    names = [n.name for n in nodes]
    for node in nodes:
        for need in node.needs:
            if need not in names:
                problems.append(
                    f"{path}.{node.name}.needs: unknown analyzer {need!r}{suggest(need, names)};"
                    f" defined: {', '.join(names)}")
    graph = graph_of(nodes)
    for cycle in nx.simple_cycles(graph):
        problems.append(f"{path}: cycle {' -> '.join([*cycle, cycle[0]])}")
    return problems


def graph_of(nodes: list[Node]) -> nx.DiGraph:
    """The DiGraph with an edge from each input to the analyzer that needs it."""
    graph = nx.DiGraph()
    for node in nodes:
        graph.add_node(node.name)
        for need in node.needs:
            graph.add_edge(need, node.name)
    return graph


def mermaid(nodes: list[Node]) -> str:
    """The DAG as a Mermaid flowchart, for documentation."""
    lines = ["flowchart LR", "  timeline[(PodTimeline)]"]
    for node in nodes:
        lines.append(f"  {_mid(node.name)}[\"{node.name} ({node.type})\"]")
        if not node.needs:
            lines.append(f"  timeline --> {_mid(node.name)}")
        lines.extend(f"  {_mid(need)} --> {_mid(node.name)}" for need in node.needs)
    return "\n".join(lines)


def _mid(name: str) -> str:
    return "a_" + "".join(c if c.isalnum() else "_" for c in name)


class AnalyzerDAG:
    """Analyzers in topological order, with their inputs by name and by role; :meth:`run`
    gives every analyzer's output."""

    def __init__(self, analyzers: list[tuple[Analyzer, tuple[str, ...]]]) -> None:
        self.analyzers = analyzers
        by_name = {a.name: a for a, _ in analyzers}
        self._roles = [
            {role: tuple(n for n in needs if role in roles_of(by_name[n]))
             for role in {r for n in needs for r in roles_of(by_name[n])}}
            for _, needs in analyzers]

    @classmethod
    def build(cls, section: Section, context: BuildContext) -> AnalyzerDAG:
        """Validate the graph, build each analyzer with its factory, then check the roles
        each one requires and the names its config takes from its inputs."""
        nodes = read_nodes(section)
        section.problems.extend(check_graph(nodes, section.path))
        if section.problems:
            raise ConfigError(section.problems)
        by_name = {n.name: n for n in nodes}
        order = list(nx.topological_sort(graph_of(nodes)))
        built: list[tuple[Analyzer, tuple[str, ...]]] = []
        for name in order:
            node = by_name[name]
            sub = section.sub(name)
            try:
                factory = registry.load(registry.ANALYZERS, node.type)
            except (KeyError, ImportError) as exc:
                sub.problem("type", str(exc).strip('"'))
                continue
            sub.get("type", None, str)
            sub.get("needs", [], list)
            try:
                built.append((factory.from_config(name, sub, context), node.needs))
            except ConfigError as exc:
                section.problems.extend(exc.problems)
        if section.problems:
            raise ConfigError(section.problems)
        dag = cls(built)
        section.problems.extend(dag.check(section.path))
        if section.problems:
            raise ConfigError(section.problems)
        return dag

    def check(self, path: str) -> list[str]:
        """Problems with the roles: a required role no input (or several) plays, and names
        a config takes from an input (stage names) that the input does not define."""
        problems = []
        for (analyzer, _), by_role in zip(self.analyzers, self._roles, strict=True):
            where = f"{path}.{analyzer.name}.needs"
            for role in getattr(analyzer, "requires", ()):
                players = by_role.get(role, ())
                if not players:
                    offer = self.providers(role)
                    problems.append(
                        f"{where}: no input plays the {role} role this analyzer requires; "
                        + (f"add {' or '.join(a.name for a in offer)}" if offer
                           else "no analyzer provides it"))
                elif len(players) > 1:
                    problems.append(f"{where}: several inputs play the {role} role: "
                                    f"{', '.join(players)}; keep one")
            inputs = {a.name: a for a, _ in self.analyzers}
            for role, name, at in references_of(analyzer):
                for player in by_role.get(role, ()):
                    defined = defined_by(inputs[player])
                    if defined is not None and name not in defined:
                        noun = role.removesuffix("s")
                        problems.append(f"{at}: unknown {noun} {name!r}"
                                        f"{suggest(name, defined)}; {player} defines: "
                                        f"{', '.join(defined)}")
        return problems

    def results(self, exclude: tuple[str, ...]) -> Results:
        """The result entries of the analyzers whose output plays none of ``exclude`` (the
        roles the pod record holds in fields of its own)."""
        return Results.of(ResultSchema.of(a.name, a) for a, _ in self.analyzers
                          if not set(roles_of(a)) & set(exclude))

    def providers(self, role: str) -> list[Analyzer]:
        """The analyzers whose output plays ``role``, in DAG order."""
        return [a for a, _ in self.analyzers if role in roles_of(a)]

    def run(self, timeline: PodTimeline) -> Mapping[str, Any]:
        outputs: dict[str, Any] = {}
        for (analyzer, needs), by_role in zip(self.analyzers, self._roles, strict=True):
            outputs[analyzer.name] = analyzer.analyze(
                timeline, Inputs({need: outputs[need] for need in needs}, by_role))
        return outputs
