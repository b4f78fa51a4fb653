# dgc wire protocol: every message between dgc processes (ingest ->
# coordinator, coordinator <-> workers, dgcctl -> coordinator) is one Envelope
# in one ZeroMQ frame, Cap'n Proto flat (unpacked) encoding.
#
# Versioning: `version` is kProtocolVersion of the sender. A receiver rejects a
# message of another version (codec.h). Compatible changes (new fields at the
# end of a struct) keep the version; a new kind of message, a renumbered field
# or a changed meaning bumps it. Never renumber or reuse an ordinal.
#
# Sizes: payloads (chunk files, artifacts, parent models) travel as Data; a
# receiver caps the whole message (DecodeOptions::max_message_bytes). Large
# payloads may instead travel by `sharedPath` on a filesystem every process
# mounts (JobAssign).
@0xa6f8066b00dd410a;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("dgc::wire::schema");

const protocolVersion :UInt16 = 1;

struct Envelope {
  version @0 :UInt16;
  # The union's discriminant is the message kind.
  body :union {
    chunkOffer @1 :ChunkOffer;
    chunkData @2 :ChunkData;
    chunkAck @3 :ChunkAck;
    credit @4 :Credit;
    register @5 :Register;
    registerAck @6 :RegisterAck;
    heartbeat @7 :Heartbeat;
    jobAssign @8 :JobAssign;
    jobResult @9 :JobResult;
    jobFailed @10 :JobFailed;
    jobAck @11 :JobAck;
    operatorRequest @12 :OperatorRequest;
    operatorReply @13 :OperatorReply;
  }
}

# --- ingest -> coordinator: the chunk stream ------------------------------

# Identity and counts of one chunk (one time window of one shard of a link).
struct ChunkMeta {
  link @0 :Text;
  shard @1 :UInt32;          # this ingest node's shard of the link (0 if unsharded)
  shardCount @2 :UInt32;     # shards of the link (1 if unsharded)
  seq @3 :Int64;             # window index since the epoch: startNs / durationNs
  startNs @4 :Int64;
  durationNs @5 :Int64;
  packets @6 :UInt64;
  rawBytes @7 :UInt64;       # bytes the packets took in their source capture
  flows @8 :UInt64;
  amend @9 :Bool;            # late packets for a window already sent: merge
}

# Announces a chunk without its bytes (the coordinator answers with Credit).
struct ChunkOffer {
  meta @0 :ChunkMeta;
  payloadBytes @1 :UInt64;   # size of the .dgcc file that ChunkData will carry
}

# A chunk and its bytes: the .dgcc chunk file (common/trace/CHUNK_FORMAT.md).
# Sent only while the sender holds credit; one chunk uses one credit.
struct ChunkData {
  meta @0 :ChunkMeta;
  payload @1 :Data;
}

# Coordinator -> ingest: the chunk is durable (the ingest may delete its spool
# copy) or refused with a reason. A refusal with retryAfterMs > 0 is for now
# (the library's disk is full): the ingest keeps the chunk and sends it again
# after that long; 0 is final (the chunk is malformed).
struct ChunkAck {
  link @0 :Text;
  shard @1 :UInt32;
  seq @2 :Int64;
  accepted @3 :Bool;
  reason @4 :Text;
  retryAfterMs @5 :UInt32;
}

# Coordinator -> ingest: flow control. The ingest may have `credits` chunks in
# flight (sent but not acknowledged); each Credit replaces the previous grant.
struct Credit {
  credits @0 :UInt32;
}

# --- workers <-> coordinator -----------------------------------------------

struct Gpu {
  index @0 :UInt32;
  memoryBytes @1 :UInt64;
  name @2 :Text;
}

# Worker -> coordinator, first message and after every reconnect. A worker
# keeps its id across restarts of the coordinator, so its leases survive.
struct Register {
  workerId @0 :Text;
  cpuThreads @1 :UInt32;
  gpus @2 :List(Gpu);
  build @3 :Text;            # dgc version of the worker
  hostname @4 :Text;
  maxJobs @5 :UInt32;        # jobs it runs at once (its capacity); 0: derived from
                             # cpuThreads and gpus. A Register with no CPU thread and
                             # no GPU means the worker is leaving: requeue its leases.
  peerAddress @6 :Text;      # host:port of its data-parallel store, reachable by the
                             # other workers; empty: it joins no job spanning workers
  ranks @7 :UInt32;          # data-parallel ranks it brings to such a job (its
                             # devices); 0: 1
}

struct RegisterAck {
  accepted @0 :Bool;
  reason @1 :Text;
  heartbeatIntervalMs @2 :UInt32;
  leaseMs @3 :UInt32;
}

# Worker -> coordinator every heartbeatIntervalMs; extends its leases.
struct Heartbeat {
  workerId @0 :Text;
  activeJobs @1 :List(UInt64);
  tokensPerSecond @2 :Float64;
}

enum JobKind {
  compress @0;               # fine-tune the parent model on the chunk
  retrain @1;                # train a new base for the link
  generate @2;               # regenerate chunks (dgcctl generate --coordinator): the
                             # parent is the chunks' model, trainChunks their
                             # skeletons, optionsJson the chunks and seeds; the
                             # result's artifact their packets (GenerateSegment)
}

struct JobAssign {
  jobId @0 :UInt64;
  attempt @1 :UInt32;        # lease number of the job; quoted back in results
  kind @2 :JobKind;
  leaseDeadlineNs @3 :Int64; # wall clock; heartbeats extend it
  meta @4 :ChunkMeta;
  chunk :union {
    chunkBytes @5 :Data;
    chunkPath @6 :Text;      # on the shared filesystem
  }
  parent :union {
    none @7 :Void;           # no parent: train from the base the options name
    parentBytes @8 :Data;    # the parent model, serialized
    parentId @9 :Text;       # a model id the worker can fetch or has cached
  }
  optionsJson @10 :Text;     # training knobs, as the model code reads them
  slots @11 :UInt32;         # worker slots the lease holds: 1 (one GPU, or a CPU
                             # slot), or all of a multi-GPU worker for a large job,
                             # which it trains data-parallel over its GPUs.
                             # 0 (a coordinator before this field): 1.
  gang @12 :Gang;            # set when the job spans several workers
  trainChunks @13 :List(Data);  # further raw chunks it trains on with its own.
                             # A retrain job: the policy's retrain set (the recent
                             # chunks like it, or a link's first chunks). A
                             # compress job: the pool, the quiet chunks since its
                             # parent last trained, oldest first (their flows
                             # count towards min_flows and train its delta).
                             # Empty from older coordinators.
}

# A job trained data-parallel across workers (a gang). Every member gets a
# JobAssign with the same job, attempt and store; the lead (firstRank 0) runs
# the job and sends the result; the others only serve training rounds (their
# JobAssign carries no chunk and no parent) and send nothing back.
struct Gang {
  storeAddress @0 :Text;     # host:port of the lead's store
  storePrefix @1 :Text;      # this lease's keys in that store
  worldSize @2 :UInt32;      # ranks, every member together
  firstRank @3 :UInt32;      # the receiver's first rank (its devices count up from it)
}

struct JobStats {
  trainSeconds @0 :Float64;
  tokens @1 :UInt64;
  fidelity @2 :Float64;      # mean metric distance (lower is better)
  artifactBytes @3 :UInt64;
  json @4 :Text;             # the full report
}

struct JobResult {
  jobId @0 :UInt64;
  attempt @1 :UInt32;
  workerId @2 :Text;
  artifact @3 :Data;         # the chunk artifact (model delta + skeleton)
  stats @4 :JobStats;
}

struct JobFailed {
  jobId @0 :UInt64;
  attempt @1 :UInt32;
  workerId @2 :Text;
  reason @3 :Text;
  retryable @4 :Bool;
}

# Coordinator -> worker: the result or failure was recorded. `duplicate`: the
# job was already committed (by this or another worker); nothing changed.
struct JobAck {
  jobId @0 :UInt64;
  duplicate @1 :Bool;
}

# --- dgcctl -> coordinator --------------------------------------------------

enum OperatorVerb {
  get @0;
  describe @1;
  cancel @2;
  retry @3;
  retrain @4;
  drain @5;
  generate @6;               # noun start | fetch | stop: a regeneration on the workers
}

# noun: jobs | workers | chunks | models; name: an id or empty for all;
# argsJson: further arguments (filters, flags) as a JSON object.
struct OperatorRequest {
  requestId @0 :UInt64;
  verb @1 :OperatorVerb;
  noun @2 :Text;
  name @3 :Text;
  argsJson @4 :Text;
}

struct OperatorReply {
  requestId @0 :UInt64;
  ok @1 :Bool;
  error @2 :Text;            # set when !ok, a message for the operator
  json @3 :Text;             # the answer, as JSON
  data @4 :Data;             # a binary answer beside it (generate fetch: packets)
}
