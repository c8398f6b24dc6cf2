//! The stream machinery: window planning, scaling, timing, composing and blending.
//! Nothing here knows about pads; the element wires it together.

pub mod blend;
pub mod composer;
pub mod convert;
pub mod geometry;
pub mod mask;
pub mod planes;
pub mod planner;
pub mod scaled;
pub mod timing;
