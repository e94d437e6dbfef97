//! Link and rpath setup for the peaqos_node executable.
//!
//! rclrs already adds `<prefix>/lib` of every AMENT_PREFIX_PATH entry to the link search path.
//! Here we also
//! - bake those directories (and the `ros_*.libs` folders that ROS 2 wheels vendor their
//!   dependencies into) into the binary's rpath, so it runs without LD_LIBRARY_PATH, plus
//!   `$ORIGIN/..` for the libraries of this package's own interfaces once installed;
//! - add PEAQOS_EXTRA_LIB_DIRS (set by CMakeLists.txt: the build directory holding this
//!   package's freshly generated interface libraries) to the search path and rpath;
//! - link libpython when the ROS libraries need it: the wheels' librcl.so depends on
//!   `*__rosidl_generator_py` libraries that leave libpython symbols unresolved.
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=AMENT_PREFIX_PATH");
    println!("cargo:rerun-if-env-changed=PEAQOS_EXTRA_LIB_DIRS");
    println!("cargo:rerun-if-env-changed=PEAQOS_LIBPYTHON_DIR");

    let mut rpath: Vec<PathBuf> = Vec::new();
    let mut needs_python = false;
    for prefix in env::var("AMENT_PREFIX_PATH").unwrap_or_default().split(':').filter(|p| !p.is_empty()) {
        let lib = PathBuf::from(prefix).join("lib");
        if !lib.is_dir() {
            continue;
        }
        rpath.push(lib.clone());
        if let Ok(bytes) = fs::read(lib.join("librcl.so")) {
            needs_python |= bytes.windows(19).any(|w| w == b"rosidl_generator_py");
        }
        // Wheels: <venv>/lib/python3.X/site-packages/ros_*.libs
        if let Ok(entries) = fs::read_dir(&lib) {
            for py in entries.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("python3")) {
                if let Ok(site) = fs::read_dir(py.path().join("site-packages")) {
                    for e in site.flatten() {
                        let name = e.file_name().to_string_lossy().into_owned();
                        if name.starts_with("ros_") && name.ends_with(".libs") {
                            rpath.push(e.path());
                        }
                    }
                }
            }
        }
    }
    for dir in env::var("PEAQOS_EXTRA_LIB_DIRS").unwrap_or_default().split(':').filter(|p| !p.is_empty()) {
        println!("cargo:rustc-link-search=native={dir}");
        rpath.push(PathBuf::from(dir));
    }
    if needs_python {
        if let Ok(dir) = env::var("PEAQOS_LIBPYTHON_DIR") {
            println!("cargo:rustc-link-search=native={dir}");
            rpath.push(PathBuf::from(dir));
        }
        println!("cargo:rustc-link-arg-bins=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg-bins=-lpython3.11");
        println!("cargo:rustc-link-arg-bins=-Wl,--as-needed");
    }
    // Installed layout: <prefix>/lib/peaqos_node/peaqos_node and <prefix>/lib/lib*.so
    println!("cargo:rustc-link-arg-bins=-Wl,-rpath,$ORIGIN/..");
    for dir in rpath {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{}", dir.display());
    }
}
