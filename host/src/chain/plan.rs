//! Chain definitions (what is stored) and plans (a definition with its
//! modules resolved and its limits fixed, ready to run).
//!
//! A [`Definition`] can only hold a valid chain: [`Definition::new`] checks
//! the name, the number of steps, the module names and the per-step limits,
//! and never panics on API input. Whether the modules exist is checked
//! against the registry when a definition is stored and again when it runs.

use crate::runtime::Limits;
use crate::runtime::registry::{Entry, Registry, RegistryError, valid_name};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Most steps in one chain.
pub const MAX_STEPS: usize = 64;
/// Most arguments of one step.
pub const MAX_ARGS: usize = 256;

/// One step as defined: a module with its arguments, environment and
/// limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDef {
    /// The module to run.
    pub module: String,
    /// Arguments after `argv[0]`.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// This step's deadline, in milliseconds (default: the node's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// This step's linear memory limit, in bytes (default: the node's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
}

impl StepDef {
    /// A step running `module` with nothing else set.
    pub fn module(module: impl Into<String>) -> Self {
        StepDef {
            module: module.into(),
            args: Vec::new(),
            env: Vec::new(),
            timeout_ms: None,
            memory: None,
        }
    }
}

/// A chain: named steps, run in order, each one's output the next one's
/// input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Definition {
    /// The chain's name (`[a-z0-9][a-z0-9._-]{0,63}`), or `""` for an
    /// ad-hoc chain.
    pub name: String,
    /// The steps, at least one.
    pub steps: Vec<StepDef>,
    /// The whole chain's deadline, in milliseconds (default: the node's
    /// invocation timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// When it was stored, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub created_ms: u64,
}

/// Why a definition is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    /// The chain's name is not valid.
    #[error(
        "invalid chain name `{0}`: use 1 to 64 characters of a-z, 0-9, `-`, `_` and `.`, starting with a letter or digit"
    )]
    InvalidName(String),
    /// No steps.
    #[error("a chain needs at least one step")]
    Empty,
    /// Too many steps.
    #[error("a chain has at most {MAX_STEPS} steps; this one has {0}")]
    TooManySteps(usize),
    /// One step is not valid.
    #[error("step {index}: {message}")]
    Step {
        /// The step's index, from 0.
        index: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A limit is above what the node allows.
    #[error("{0}")]
    Limit(String),
}

/// The ceilings a definition's limits must stay under.
#[derive(Clone, Debug)]
pub struct Ceilings {
    /// The longest timeout.
    pub timeout: Duration,
    /// The largest memory limit.
    pub memory: u64,
}

impl Definition {
    /// Checks and builds a definition. `name` may be `""` for an ad-hoc
    /// chain.
    pub fn new(
        name: &str,
        steps: Vec<StepDef>,
        timeout: Option<Duration>,
        ceilings: &Ceilings,
    ) -> Result<Definition, DefinitionError> {
        if !name.is_empty() && !valid_name(name) {
            return Err(DefinitionError::InvalidName(name.to_owned()));
        }
        if steps.is_empty() {
            return Err(DefinitionError::Empty);
        }
        if steps.len() > MAX_STEPS {
            return Err(DefinitionError::TooManySteps(steps.len()));
        }
        let over = |what: &str, value: Duration| {
            DefinitionError::Limit(format!(
                "{what} {} is above this server's maximum of {}",
                crate::units::format_duration(value),
                crate::units::format_duration(ceilings.timeout)
            ))
        };
        if let Some(timeout) = timeout
            && timeout > ceilings.timeout
        {
            return Err(over("the chain's timeout", timeout));
        }
        for (index, step) in steps.iter().enumerate() {
            let bad = |message: String| DefinitionError::Step { index, message };
            if !valid_name(&step.module) {
                return Err(bad(format!("`{}` is not a valid module name", step.module)));
            }
            if step.args.len() > MAX_ARGS {
                return Err(bad(format!("more than {MAX_ARGS} arguments")));
            }
            if let Some((key, _)) = step
                .env
                .iter()
                .find(|(k, _)| k.is_empty() || k.contains('='))
            {
                return Err(bad(format!("`{key}` is not an environment variable name")));
            }
            if let Some(ms) = step.timeout_ms {
                let timeout = Duration::from_millis(ms);
                if timeout > ceilings.timeout || ms == 0 {
                    return Err(bad(format!(
                        "timeout {} must be above 0 and at most {}",
                        crate::units::format_duration(timeout),
                        crate::units::format_duration(ceilings.timeout)
                    )));
                }
            }
            if let Some(memory) = step.memory
                && (memory > ceilings.memory || memory == 0)
            {
                return Err(bad(format!(
                    "memory limit {} must be above 0 and at most {}",
                    crate::units::format_size(memory),
                    crate::units::format_size(ceilings.memory)
                )));
            }
        }
        Ok(Definition {
            name: name.to_owned(),
            steps,
            timeout_ms: timeout.map(|t| t.as_millis() as u64),
            created_ms: crate::activity::now_ms(),
        })
    }

    /// The chain's deadline, or `default`.
    pub fn timeout(&self, default: Option<Duration>) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis).or(default)
    }
}

/// Why a definition cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A step names a module that is not deployed.
    #[error("step {index}: no module named `{module}`")]
    UnknownModule {
        /// The step's index.
        index: usize,
        /// The missing module.
        module: String,
    },
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// A step ready to run.
#[derive(Clone, Debug)]
pub struct Step {
    /// The module's name.
    pub module: String,
    /// The module, loaded.
    pub entry: Arc<Entry>,
    /// Arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Its limits.
    pub limits: Limits,
}

/// A definition with its modules resolved: what the executor runs.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The chain's name (`""` when ad hoc).
    pub name: String,
    /// The steps.
    pub steps: Vec<Step>,
    /// The whole chain's deadline.
    pub timeout: Option<Duration>,
}

impl Plan {
    /// Resolves `definition`'s modules in `registry`, with `defaults` for
    /// the limits a step does not set.
    pub fn new(
        definition: &Definition,
        registry: &Registry,
        defaults: &Limits,
    ) -> Result<Plan, PlanError> {
        let mut steps = Vec::with_capacity(definition.steps.len());
        for (index, step) in definition.steps.iter().enumerate() {
            let entry = registry
                .get(&step.module)?
                .ok_or_else(|| PlanError::UnknownModule {
                    index,
                    module: step.module.clone(),
                })?;
            let mut limits = defaults.clone();
            if let Some(ms) = step.timeout_ms {
                limits.timeout = Some(Duration::from_millis(ms));
            }
            if let Some(memory) = step.memory {
                limits.memory = memory;
            }
            steps.push(Step {
                module: step.module.clone(),
                entry,
                args: step.args.clone(),
                env: step.env.clone(),
                limits,
            });
        }
        Ok(Plan {
            name: definition.name.clone(),
            steps,
            timeout: definition.timeout(defaults.timeout),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ceilings() -> Ceilings {
        Ceilings {
            timeout: Duration::from_secs(60),
            memory: 1 << 30,
        }
    }

    #[test]
    fn refuses_what_cannot_run() {
        let c = ceilings();
        assert_eq!(
            Definition::new("x", vec![], None, &c),
            Err(DefinitionError::Empty)
        );
        assert!(matches!(
            Definition::new("Bad Name", vec![StepDef::module("a")], None, &c),
            Err(DefinitionError::InvalidName(_))
        ));
        assert!(matches!(
            Definition::new(
                "x",
                vec![StepDef::module("a"), StepDef::module("A/b")],
                None,
                &c
            ),
            Err(DefinitionError::Step { index: 1, .. })
        ));
        let too_many = vec![StepDef::module("a"); MAX_STEPS + 1];
        assert_eq!(
            Definition::new("x", too_many, None, &c),
            Err(DefinitionError::TooManySteps(MAX_STEPS + 1))
        );
        let mut step = StepDef::module("a");
        step.memory = Some(2 << 30);
        assert!(matches!(
            Definition::new("x", vec![step], None, &c),
            Err(DefinitionError::Step { index: 0, .. })
        ));
        assert!(matches!(
            Definition::new(
                "x",
                vec![StepDef::module("a")],
                Some(Duration::from_secs(61)),
                &c
            ),
            Err(DefinitionError::Limit(_))
        ));
        let mut step = StepDef::module("a");
        step.env = vec![("".into(), "v".into())];
        assert!(Definition::new("x", vec![step], None, &c).is_err());
    }

    #[test]
    fn accepts_an_ad_hoc_chain_and_round_trips_as_json() {
        let mut step = StepDef::module("top-k");
        step.args = vec!["3".into()];
        step.timeout_ms = Some(500);
        let definition = Definition::new(
            "",
            vec![StepDef::module("tokenize"), step],
            Some(Duration::from_secs(2)),
            &ceilings(),
        )
        .unwrap();
        let json = serde_json::to_string(&definition).unwrap();
        let back: Definition = serde_json::from_str(&json).unwrap();
        assert_eq!(back, definition);
        assert_eq!(back.timeout(None), Some(Duration::from_secs(2)));
    }
}
