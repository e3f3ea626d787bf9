//! The heart of mpt: soft prompts, the multitask prompt decomposition `P* ∘ (u vᵀ)`, prompt
//! initialisation, and the versioned artifacts through which pipeline stages talk.

pub mod artifact;
mod error;
pub mod init;
pub mod peft;
pub mod prompt;

pub use artifact::{Artifact, ArtifactKind, ArtifactMeta, BackboneRef, InUse, Layout, NewArtifact};
pub use error::{CoreError, Result};
pub use prompt::{Classifier, MultitaskPrompt, PromptParams, SoftPrompt, TaskPrompts};
