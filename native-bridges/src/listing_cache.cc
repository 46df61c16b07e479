// The READDIRPLUS listing cache (listing_cache.h says what keeps a served listing true).
#include "listing_cache.h"

#include <algorithm>
#include <atomic>
#include <iterator>
#include <mutex>

namespace manila {

namespace {

// When each object last changed through this gateway, by a hash of (dev, ino): a collision only
// makes a cached entry be looked up again. 65,536 slots: a few of a 10,000-entry listing per
// changed object, at most.
constexpr size_t kChangedSlots = 1u << 16;
std::atomic<uint64_t> g_changed[kChangedSlots];

size_t ChangedSlot(uint64_t dev, uint64_t ino) {
  uint64_t h = ino * 0x9e3779b97f4a7c15ULL ^ (dev + 0x632be59bd9b4e019ULL) * 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 31;
  return static_cast<size_t>(h & (kChangedSlots - 1));
}

}  // namespace

void MarkChanged(const struct stat& st) {
  // +1: a change in the very nanosecond of a fill still counts as after it
  g_changed[ChangedSlot(st.st_dev, st.st_ino)].store(MonotonicNs() + 1, std::memory_order_release);
}

bool ChangedSince(uint64_t dev, uint64_t ino, uint64_t sinceNs) {
  return g_changed[ChangedSlot(dev, ino)].load(std::memory_order_acquire) >= sinceNs;
}

DirIdentity DirIdentity::Of(const struct stat& st) {
  DirIdentity d;
  d.dev = st.st_dev;
  d.ino = st.st_ino;
  d.size = static_cast<uint64_t>(st.st_size);
  d.nlink = st.st_nlink;
  d.mode = st.st_mode;
  d.uid = st.st_uid;
  d.gid = st.st_gid;
  d.mtimeSec = st.st_mtim.tv_sec;
  d.mtimeNsec = st.st_mtim.tv_nsec;
  d.ctimeSec = st.st_ctim.tv_sec;
  d.ctimeNsec = st.st_ctim.tv_nsec;
  return d;
}

bool DirIdentity::operator==(const DirIdentity& o) const {
  return dev == o.dev && ino == o.ino && size == o.size && nlink == o.nlink && mode == o.mode && uid == o.uid &&
         gid == o.gid && mtimeSec == o.mtimeSec && mtimeNsec == o.mtimeNsec && ctimeSec == o.ctimeSec &&
         ctimeNsec == o.ctimeNsec;
}

size_t Listing::Bytes() const {
  // the map's nodes: a key, a value and about two pointers each
  return sizeof(Listing) + blob.capacity() + entries.capacity() * sizeof(CachedEntry) + after.size() * 40;
}

namespace listing_cache {
namespace {

struct Key {
  uint64_t share, dev, ino;
  bool operator==(const Key& o) const { return share == o.share && dev == o.dev && ino == o.ino; }
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    return static_cast<size_t>((k.share * 0x9e3779b97f4a7c15ULL) ^ (k.dev * 0xbf58476d1ce4e5b9ULL) ^ k.ino);
  }
};

struct Slot {
  ListingRef listing;
  uint64_t lastUsedNs = 0;
  uint64_t seenNs = 0;  // last ClaimFill that did not fill: the first sighting
  uint64_t noFillBeforeNs = 0;  // after a failed fill
  bool filling = false;
};

struct State {
  std::mutex mu;
  std::unordered_map<Key, Slot, KeyHash> slots;
  size_t bytes = 0;
  uint64_t fills = 0;
};

std::atomic<uint64_t> g_hits{0};

// Leaked on purpose: pool threads may still use it while static destructors run at exit.
State& S() {
  static State* s = new State;
  return *s;
}

void DropListing(State& s, Slot& slot) {
  if (slot.listing) s.bytes -= slot.listing->Bytes();
  slot.listing.reset();
}

// Under s.mu: evicts least recently used listings (never one being filled) until `need` more fit.
void MakeRoom(State& s, size_t need) {
  while (s.bytes + need > kMaxCacheBytes) {
    auto victim = s.slots.end();
    for (auto it = s.slots.begin(); it != s.slots.end(); ++it) {
      if (it->second.listing && (victim == s.slots.end() || it->second.lastUsedNs < victim->second.lastUsedNs))
        victim = it;
    }
    if (victim == s.slots.end()) return;
    DropListing(s, victim->second);
    if (!victim->second.filling) s.slots.erase(victim);
  }
}

// Under s.mu: forgets sightings and listings unused for a minute, so the map stays small.
void Sweep(State& s, uint64_t nowNs) {
  constexpr uint64_t kIdleNs = 60'000'000'000ULL;
  for (auto it = s.slots.begin(); it != s.slots.end();) {
    Slot& slot = it->second;
    if (!slot.filling && nowNs - std::max(slot.lastUsedNs, slot.seenNs) > kIdleNs) {
      DropListing(s, slot);
      it = s.slots.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace

ListingRef Find(uint64_t shareId, uint64_t dev, uint64_t ino) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.slots.find(Key{shareId, dev, ino});
  if (it == s.slots.end() || !it->second.listing) return nullptr;
  it->second.lastUsedNs = MonotonicNs();
  return it->second.listing;
}

bool ClaimFill(uint64_t shareId, uint64_t dev, uint64_t ino, uint64_t nowNs, uint64_t windowNs) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  // A walk over many directories, each listed once, leaves only sightings: forget them in bulk
  // (a forgotten one only delays a fill) so the map stays bounded.
  if (s.slots.size() >= kMaxSlots) {
    for (auto it = s.slots.begin(); it != s.slots.end();) {
      it = !it->second.listing && !it->second.filling ? s.slots.erase(it) : std::next(it);
    }
  }
  Slot& slot = s.slots[Key{shareId, dev, ino}];
  if (slot.filling || nowNs < slot.noFillBeforeNs) return false;
  const bool hot = slot.listing != nullptr || (slot.seenNs != 0 && nowNs - slot.seenNs <= windowNs);
  if (!hot) {
    slot.seenNs = nowNs;
    return false;
  }
  slot.filling = true;
  return true;
}

void Store(ListingRef listing) {
  State& s = S();
  const size_t bytes = listing->Bytes();
  const uint64_t now = MonotonicNs();
  std::lock_guard<std::mutex> lock(s.mu);
  Slot& slot = s.slots[Key{listing->shareId, listing->dir.dev, listing->dir.ino}];
  slot.filling = false;
  DropListing(s, slot);
  Sweep(s, now);
  MakeRoom(s, bytes);
  Slot& kept = s.slots[Key{listing->shareId, listing->dir.dev, listing->dir.ino}];
  kept.listing = std::move(listing);
  kept.lastUsedNs = now;
  s.bytes += bytes;
  if (!kept.listing->uncacheable) s.fills++;
}

void Abandon(uint64_t shareId, uint64_t dev, uint64_t ino, uint64_t retryAfterNs) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.slots.find(Key{shareId, dev, ino});
  if (it == s.slots.end()) return;
  it->second.filling = false;
  it->second.noFillBeforeNs = MonotonicNs() + retryAfterNs;
}

Stats GetStats() {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  Stats st;
  st.hits = g_hits.load(std::memory_order_relaxed);
  st.fills = s.fills;
  st.bytes = s.bytes;
  for (const auto& [key, slot] : s.slots) st.listings += slot.listing ? 1 : 0;
  return st;
}

void CountHit() { g_hits.fetch_add(1, std::memory_order_relaxed); }

}  // namespace listing_cache
}  // namespace manila
