// Shared by the conv2d implicit-GEMM kernels (spliced in where they say `#include conv2d_lanes`):
// the tile constants and how a lane's gathered rows reach the rest of its group.
const SG: u32 = ${SG}u;
const TM: u32 = ${TM}u;
const LOADS: u32 = TM / SG; // rows each lane gathers per step

// Hands each lane's gathered row values to the whole group: subgroup shuffles where the adapter has
// them (SUBGROUPS), else through workgroup memory (portable; correct everywhere, tuned nowhere).
#if ${SUBGROUPS}
fn share(mine: vec4<f32>, lane: u32) {}
fn from_lane(mine: vec4<f32>, s: u32) -> vec4<f32> { return subgroupShuffle(mine, s); }
fn shared_done() {}
#else
var<workgroup> exchange: array<vec4<f32>, SG>;
fn share(mine: vec4<f32>, lane: u32) {
  exchange[lane] = mine;
  workgroupBarrier();
}
fn from_lane(mine: vec4<f32>, s: u32) -> vec4<f32> { return exchange[s]; }
fn shared_done() { workgroupBarrier(); }
#endif
