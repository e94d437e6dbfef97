//! The Fast DDS profile the package installs (`share/peaqos_node/config/fastdds.xml`).
//!
//! rmw_fastrtps drops a service reply when the client's reply reader is not matched within the
//! reply writer's `max_blocking_time` (100 ms by default): a client that calls right after
//! `wait_for_service` on a busy machine then waits forever, although the node did the work (an
//! activation, a registration). The packaged profile raises that bound; see the file's comment.
//!
//! Fast DDS reads its profile file once, when the first participant is made, so [`apply`] must run
//! before the ROS context exists, while the process has one thread.
use std::path::{Path, PathBuf};

/// The variables Fast DDS 2 (Jazzy) and Fast DDS 3 read the profile file's path from.
const PROFILE_VARS: [&str; 2] = ["FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE"];

/// What [`apply`] decided, to be logged once the node's logger exists.
#[derive(Debug, PartialEq, Eq)]
pub enum Choice {
    /// The packaged profile is in effect.
    Packaged(PathBuf),
    /// The operator gave a profile file; it is left alone.
    Operator { var: &'static str, path: String },
    /// Another middleware than Fast DDS: nothing to do.
    OtherRmw(String),
    /// The package's share directory has no profile (a binary run outside its install tree).
    NotFound,
}

/// Point Fast DDS at the packaged profile unless the operator chose a profile file or another
/// middleware. Call before creating the ROS context, while the process is single-threaded.
pub fn apply() -> Choice {
    let choice = choose(|name| std::env::var(name).ok(), installed_profile());
    if let Choice::Packaged(path) = &choice {
        for var in PROFILE_VARS {
            std::env::set_var(var, path);
        }
    }
    choice
}

/// Log the choice through the node's logger.
pub fn log(choice: &Choice) {
    match choice {
        Choice::Packaged(path) => tracing::info!(
            "Fast DDS profile {}: a service reply waits its max_blocking_time for a caller still being discovered",
            path.display()
        ),
        Choice::Operator { var, path } => tracing::info!(
            "Fast DDS profile from {var}={path}; give its `service` publisher profile a \
             max_blocking_time of a few seconds (see share/peaqos_node/config/fastdds.xml), or \
             replies to callers that call right after discovery can be lost"
        ),
        Choice::OtherRmw(rmw) => tracing::debug!("RMW_IMPLEMENTATION={rmw}: no Fast DDS profile"),
        Choice::NotFound => tracing::warn!(
            "{PROFILE_IN_PREFIX} found neither beside the executable nor in AMENT_PREFIX_PATH: \
             Fast DDS drops a service reply after 100 ms when the caller is still being discovered"
        ),
    }
}

fn choose(env: impl Fn(&str) -> Option<String>, installed: Option<PathBuf>) -> Choice {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(rmw) = set("RMW_IMPLEMENTATION") {
        if !rmw.starts_with("rmw_fastrtps") {
            return Choice::OtherRmw(rmw);
        }
    }
    for var in PROFILE_VARS {
        if let Some(path) = set(var) {
            return Choice::Operator { var, path };
        }
    }
    installed.map_or(Choice::NotFound, Choice::Packaged)
}

const PROFILE_IN_PREFIX: &str = "share/peaqos_node/config/fastdds.xml";

/// The profile of the install prefix the executable runs from (`<prefix>/lib/peaqos_node/`),
/// else of the first sourced prefix that has one (a `--symlink-install` executable resolves into
/// the build tree).
fn installed_profile() -> Option<PathBuf> {
    let beside_exe = std::env::current_exe().ok().and_then(|exe| profile_beside(&exe));
    let prefixes = std::env::var_os("AMENT_PREFIX_PATH").unwrap_or_default();
    beside_exe
        .into_iter()
        .chain(std::env::split_paths(&prefixes).map(|p| p.join(PROFILE_IN_PREFIX)))
        .find(|p| p.is_file())
}

fn profile_beside(exe: &Path) -> Option<PathBuf> {
    let prefix = exe.parent()?.parent()?.parent()?;
    Some(prefix.join(PROFILE_IN_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn packaged_profile_is_used_when_nothing_is_set() {
        let p = PathBuf::from("/opt/ws/install/peaqos_node/share/peaqos_node/config/fastdds.xml");
        assert_eq!(choose(env(&[]), Some(p.clone())), Choice::Packaged(p.clone()));
        assert_eq!(choose(env(&[("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")]), Some(p.clone())), Choice::Packaged(p));
    }

    #[test]
    fn an_operator_profile_or_another_middleware_is_left_alone() {
        let p = Some(PathBuf::from("/x/fastdds.xml"));
        assert_eq!(
            choose(env(&[("FASTRTPS_DEFAULT_PROFILES_FILE", "/etc/mine.xml")]), p.clone()),
            Choice::Operator { var: "FASTRTPS_DEFAULT_PROFILES_FILE", path: "/etc/mine.xml".into() }
        );
        assert_eq!(
            choose(env(&[("FASTDDS_DEFAULT_PROFILES_FILE", "/etc/mine.xml")]), p.clone()),
            Choice::Operator { var: "FASTDDS_DEFAULT_PROFILES_FILE", path: "/etc/mine.xml".into() }
        );
        assert_eq!(
            choose(env(&[("RMW_IMPLEMENTATION", "rmw_cyclonedds_cpp")]), p),
            Choice::OtherRmw("rmw_cyclonedds_cpp".into())
        );
        assert_eq!(choose(env(&[]), None), Choice::NotFound);
    }

    #[test]
    fn the_profile_is_found_from_the_installed_executable() {
        let exe = Path::new("/opt/ws/install/peaqos_node/lib/peaqos_node/peaqos_node");
        assert_eq!(
            profile_beside(exe).unwrap(),
            PathBuf::from("/opt/ws/install/peaqos_node/share/peaqos_node/config/fastdds.xml")
        );
    }
}
