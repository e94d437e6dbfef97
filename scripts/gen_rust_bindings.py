#!/usr/bin/env python3
"""Generate rclrs-0.8 Rust bindings for ROS 2 interface packages.

rclrs 0.8 finds interface bindings through its `ros-env` crate, which includes every
`<prefix>/share/<pkg>/rust/Cargo.toml` on AMENT_PREFIX_PATH that is marked
`[package.metadata.ros-env] include = true`, as the module `ros_env::<pkg>`:

    pub mod <pkg> {
        pub mod msg { use crate::<dep>; include!("<dir>/src/msg.rs");
                      pub mod rmw { use crate::<dep>; include!("<dir>/src/msg/rmw.rs"); } }
        pub mod srv { ... }
        pub mod action { ... }
    }

Those crates are normally produced by rosidl_generator_rs, which neither the package
registries nor a stock ros:jazzy image ship. `colcon-cargo-ros2 bindgen` (PyPI) has a native
generator, but it emits the rclrs-0.7 layout: one standalone crate per package, whose files
refer to `crate::msg::...` and `crate::rosidl_runtime_rs`, and whose rmw service types are
spelled `FooRequest` where rclrs expects `Foo_Request`. This script runs that generator for
each package (and, transitively, every interface package it depends on) and rewrites the
result into the ros-env layout under `<output>/share/<pkg>/rust/`.

Actions come out of the generator whole: for `Foo.action` the goal, result and feedback
messages, `Foo_SendGoal` and `Foo_GetResult` (services), `FooFeedbackMessage`, and `Foo`
implementing `rosidl_runtime_rs::Action` (the functions that build and split the goal request,
goal response, feedback message, result request and result response), in both layers; their
goal ids and stamps refer to unique_identifier_msgs and builtin_interfaces, and the cancel
service is action_msgs' `CancelGoal`, so those packages are generated too. The rewrite is the
same as for msg/srv, plus the `Foo_Goal`-style names rclrs uses (see `action_type_aliases`).

Usage:
    gen_rust_bindings.py --output PREFIX [--package-path PKG=DIR ...] PKG [PKG ...]

`--package-path` points the generator at a package that is not installed yet (this
package's own msg/srv/action during its CMake build). The output prefix is then put in front of
AMENT_PREFIX_PATH when cargo builds the node.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

KINDS = ("msg", "srv", "action")


def fail(msg: str) -> None:
    print(f"gen_rust_bindings: error: {msg}", file=sys.stderr)
    sys.exit(1)


def find_bindgen() -> list[str]:
    exe = shutil.which("colcon-cargo-ros2")
    if exe is None:
        # Next to this interpreter (a venv that was not activated).
        candidate = Path(sys.executable).with_name("colcon-cargo-ros2")
        if candidate.exists():
            exe = str(candidate)
    if exe is None:
        fail("colcon-cargo-ros2 not found: `pip install colcon-cargo-ros2` (scripts/setup does)")
    return [exe, "bindgen"]


def run_bindgen(bindgen: list[str], pkg: str, share_dir: str | None, workdir: Path) -> Path:
    """Run the generator for one package into an empty directory, return the crate dir."""
    out = workdir / f"gen-{pkg}"
    out.mkdir()
    cmd = bindgen + ["--package", pkg, "--output", str(out)]
    if share_dir:
        # The generator names the package after the directory: give it one named `pkg`.
        staged = workdir / f"src-{pkg}" / pkg
        staged.mkdir(parents=True)
        for entry in ("package.xml",) + KINDS:
            if (Path(share_dir) / entry).exists():
                (staged / entry).symlink_to((Path(share_dir) / entry).resolve())
        cmd += ["--package-path", str(staged)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        fail(f"bindgen for {pkg} failed:\n{proc.stdout}{proc.stderr}")
    crates = [p for p in out.iterdir() if (p / "Cargo.toml").exists()]
    if len(crates) != 1:
        fail(f"bindgen for {pkg} produced {len(crates)} crates in {out}, expected 1")
    return crates[0]


def path_deps(cargo_toml: Path) -> list[str]:
    """Names of the sibling interface crates a generated crate depends on."""
    deps = []
    for line in cargo_toml.read_text().splitlines():
        m = re.match(r'^([A-Za-z0-9_]+)\s*=\s*\{\s*path\s*=\s*"\.\./([A-Za-z0-9_]+)"', line)
        if m:
            deps.append(m.group(2))
    return deps


def rewrite_refs(text: str, pkg: str, deps: list[str]) -> str:
    """Turn crate-relative paths of a standalone crate into ros-env module paths."""
    for dep in deps:
        # `builtin_interfaces::msg::Time` -> `crate::builtin_interfaces::msg::Time`
        text = re.sub(rf"(?<![\w:]){dep}::", f"crate::{dep}::", text)
    text = re.sub(r"^\s*use super::rosidl_runtime_rs;\s*$", "", text, flags=re.M)
    text = text.replace("crate::rosidl_runtime_rs", "rosidl_runtime_rs")
    for kind in KINDS:
        text = text.replace(f"crate::{kind}::", f"crate::{pkg}::{kind}::")
    # Generated files may not carry inner attributes once include!()d into a module.
    text = re.sub(r"^#!\[.*\]\s*$", "", text, flags=re.M)
    return text


def rmw_associated_consts(text: str) -> str:
    """Constants are module-level in the generated rmw layer; rclrs reads them as associated
    constants (`ParameterType::PARAMETER_BOOL`), as the idiomatic layer already has them."""
    structs = re.findall(r"^pub struct ([A-Za-z0-9_]+)", text, flags=re.M)
    if not structs:
        return text
    groups: dict[str, list[str]] = {}
    request = next((n for n in structs if n.endswith("Request")), None)
    response = next((n for n in structs if n.endswith("Response")), None)
    owner = structs[0]
    for line in text.splitlines():
        if line.startswith("// Request constants") and request:
            owner = request
        elif line.startswith("// Response constants") and response:
            owner = response
        elif line.startswith("pub const "):
            groups.setdefault(owner, []).append(line)
    impls = "".join(
        f"\nimpl {name} {{\n" + "".join(f"    {c}\n" for c in consts) + "}\n" for name, consts in groups.items()
    )
    return text + impls


def split_rmw_block(mod_rs: str) -> tuple[str, str]:
    """Split a generated `mod.rs` into (rmw block body, the rest)."""
    start = re.search(r"^pub mod rmw \{\s*$", mod_rs, flags=re.M)
    if start is None:
        return "", mod_rs
    depth = 0
    i = mod_rs.index("{", start.start())  # the opening brace
    for j in range(i, len(mod_rs)):
        c = mod_rs[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                body = mod_rs[i + 1 : j]
                rest = mod_rs[: start.start()] + mod_rs[j + 1 :]
                return body, rest
    fail("unbalanced braces in generated mod.rs")
    return "", ""  # unreachable


def absolutize_includes(text: str, src_dir: Path) -> str:
    def inc(m: re.Match) -> str:
        return f'include!("{(src_dir / m.group(1)).as_posix()}");'

    text = re.sub(r'include!\("([^"]+)"\);', inc, text)

    # `#[path = "x.rs"] mod name;` -> an inline module including the file by absolute path.
    def path_mod(m: re.Match) -> str:
        vis, name = m.group(2) or "", m.group(3)
        return f'{vis}mod {name} {{ include!("{(src_dir / m.group(1)).as_posix()}"); }}'

    return re.sub(r'#\[path\s*=\s*"([^"]+)"\]\s*\n\s*(pub\s+)?mod\s+([A-Za-z0-9_]+)\s*;', path_mod, text)


def rmw_service_aliases(rmw_body: str) -> str:
    """rclrs names rmw service messages `Foo_Request`; the generator says `FooRequest`."""
    aliases = []
    for m in re.finditer(r"pub use [a-z0-9_]+::([A-Za-z0-9]+)(Request|Response);", rmw_body):
        base, suffix = m.group(1), m.group(2)
        aliases.append(f"#[allow(non_camel_case_types)] pub type {base}_{suffix} = {base}{suffix};")
    return rmw_body + "\n" + "\n".join(aliases) + "\n"


def action_type_aliases(module_body: str) -> str:
    """rclrs (like rosidl_generator_rs) names an action's parts `Foo_Goal`, `Foo_Result`,
    `Foo_Feedback` and, in the rmw layer, `Foo_FeedbackMessage`; the generator says `FooGoal`.
    Alias every part the module re-exports, in either layer."""
    aliases = []
    parts = "FeedbackMessage|Feedback|Result|Goal"
    for m in re.finditer(rf"pub use [a-z0-9_]+::([A-Za-z0-9]+?)({parts});", module_body):
        base, part = m.group(1), m.group(2)
        aliases.append(f"#[allow(non_camel_case_types)] pub type {base}_{part} = {base}{part};")
    return module_body + "\n" + "\n".join(aliases) + "\n"


def convert(crate_dir: Path, pkg: str, deps: list[str], dest: Path, version: str) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "src").mkdir(parents=True)
    dep_lines = "\n".join(f'{d} = "*"' for d in deps)
    (dest / "Cargo.toml").write_text(
        f"""# Generated by peaqos_node scripts/gen_rust_bindings.py from the {pkg} interface
# definitions. rclrs 0.8 includes it through the ros-env crate.
[package]
name = "{pkg}"
version = "0.0.0"
edition = "2021"

[package.metadata.ros]
package_version = "{version}"

[package.metadata.ros-env]
include = true

[dependencies]
rosidl_runtime_rs = "0.7"
{dep_lines}
"""
    )
    for kind in KINDS:
        src_kind = crate_dir / "src" / kind
        if not (src_kind / "mod.rs").exists():
            continue
        out_kind = dest / "src" / kind
        out_kind.mkdir()
        # Per-interface files, rewritten, next to the module files that include them.
        for f in sorted(src_kind.iterdir()):
            if f.name == "mod.rs" or f.suffix != ".rs":
                continue
            text = rewrite_refs(f.read_text(), pkg, deps)
            # rclrs derives PartialOrd on types holding builtin_interfaces/Time.
            text = text.replace("#[derive(Debug, Clone, PartialEq)]", "#[derive(Debug, Clone, PartialEq, PartialOrd)]")
            if f.name.endswith("_rmw.rs"):
                text = rmw_associated_consts(text)
            (out_kind / f.name).write_text(text)
        rmw_body, rest = split_rmw_block(rewrite_refs((src_kind / "mod.rs").read_text(), pkg, deps))
        rmw_body = absolutize_includes(rmw_body, out_kind.resolve())
        rest = absolutize_includes(rest, out_kind.resolve())
        if kind == "srv":
            rmw_body = rmw_service_aliases(rmw_body)
        if kind == "action":
            rmw_body, rest = action_type_aliases(rmw_body), action_type_aliases(rest)
        (out_kind / "rmw.rs").write_text(rmw_body)
        (dest / "src" / f"{kind}.rs").write_text(rest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", required=True, help="prefix to write share/<pkg>/rust into")
    ap.add_argument("--package-path", action="append", default=[], metavar="PKG=DIR",
                    help="interface definitions of a package that is not installed yet")
    ap.add_argument("packages", nargs="+")
    args = ap.parse_args()

    overrides = {}
    for item in args.package_path:
        if "=" not in item:
            fail(f"--package-path expects PKG=DIR, got {item!r}")
        k, v = item.split("=", 1)
        overrides[k] = v

    bindgen = find_bindgen()
    out = Path(args.output).resolve()
    done: set[str] = set()
    todo = list(dict.fromkeys(args.packages))
    with tempfile.TemporaryDirectory(prefix="peaqos-bindgen-") as tmp:
        work = Path(tmp)
        while todo:
            pkg = todo.pop(0)
            if pkg in done:
                continue
            crate = run_bindgen(bindgen, pkg, overrides.get(pkg), work)
            deps = path_deps(crate / "Cargo.toml")
            m = re.search(r'package_version\s*=\s*"([^"]*)"', (crate / "Cargo.toml").read_text())
            convert(crate, pkg, deps, out / "share" / pkg / "rust", m.group(1) if m else "0.0.0")
            done.add(pkg)
            todo.extend(d for d in deps if d not in done)
    print(f"gen_rust_bindings: {len(done)} packages -> {out}/share/*/rust: {' '.join(sorted(done))}")


if __name__ == "__main__":
    main()
