// Fault injection for crash tests, in the manner of RocksDB's sync points:
// the environment variable DGC_FAULT="POINT[:N][,POINT[:N]...]" makes the
// process kill itself with SIGKILL the N-th time (default: the first) it
// reaches FaultPoint("POINT"), after writing
//   dgc fault point POINT hit N: SIGKILL
// to stderr, so a test knows the kill landed exactly there (inside the window
// it means to test) rather than somewhere a timer happened to fall.
//
// Unset, a point costs a check of a static pointer. The points are named
// "component.what.where", e.g. "library.commit.after_write"; each is
// documented where it is placed and listed in README.md (Tests and CI).
#ifndef DGC_COMMON_BASE_FAULT_H_
#define DGC_COMMON_BASE_FAULT_H_

namespace dgc {

void FaultPoint(const char* name);

}  // namespace dgc

#endif  // DGC_COMMON_BASE_FAULT_H_
