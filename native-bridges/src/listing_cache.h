// The READDIRPLUS listing cache: a directory's entryplus3 records, encoded once (handle tag and
// fattr3 included) and served again to every listing of it for at most a share's
// `listingCacheMs`, so repeated listings of a large directory cost no system call per entry.
//
// What keeps a served listing true (readdir.cc checks each, per call):
// - the directory's own stat (a fresh fstat per call) is the one of the fill: an entry added,
//   removed or renamed changes its mtime and ctime;
// - the fill did not start within kRacyNs of the directory's ctime (a change in the same
//   timestamp tick would leave both unchanged, as git's "racy" index entries); so a directory
//   that keeps changing is never filled, and costs what it did without the cache;
// - nothing changed the directory through this gateway since the fill (MarkChanged), whatever
//   its timestamps say;
// - an entry whose object changed through this gateway since the fill (a WRITE, SETATTR, LINK)
//   is looked up again, live;
// - the fill is younger than the share's listingCacheMs: the bound on how stale an entry's
//   attributes may be when another host or a host process changed it.
// The caller's right to list the directory is checked on every call (faccessat), never cached.
#pragma once

#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "common.h"

namespace manila {

/** Notes that the object of `st` changed through this gateway now (lock-free, any thread). */
void MarkChanged(const struct stat& st);
/** MarkChanged of a stat that may be missing. */
inline void MarkChangedOpt(const OptStat& s) {
  if (s.ok) MarkChanged(s.st);
}
/** Whether MarkChanged may have been called for (dev, ino) after `sinceNs` (false positives only). */
bool ChangedSince(uint64_t dev, uint64_t ino, uint64_t sinceNs);

/** The fields of a directory's stat that any change of its entries or permissions moves. */
struct DirIdentity {
  uint64_t dev = 0, ino = 0, size = 0, nlink = 0;
  uint32_t mode = 0, uid = 0, gid = 0;
  int64_t mtimeSec = 0, mtimeNsec = 0, ctimeSec = 0, ctimeNsec = 0;

  static DirIdentity Of(const struct stat& st);
  bool operator==(const DirIdentity& o) const;
};

/** One cached entryplus3: its bytes in Listing::blob, and what the budget and a live lookup need. */
struct CachedEntry {
  uint32_t offset = 0;    // of the entry's value-follows word in blob
  uint32_t size = 0;      // its encoded bytes (value-follows through name_handle)
  uint32_t dirSize = 0;   // entryplus3DirSize: fileid, name, cookie
  uint32_t nameLength = 0;  // the name's bytes are at offset + 16
  uint64_t dIno = 0;      // getdents' d_ino
  uint64_t cookie = 0;    // getdents' d_off
  bool object = false;    // objDev/objIno are the entry's object (its lookup succeeded)
  uint64_t objDev = 0, objIno = 0;
};

/** A whole directory as one READDIRPLUS fill saw it; immutable once stored. */
struct Listing {
  uint64_t shareId = 0;
  DirIdentity dir;
  uint64_t filledNs = 0;
  bool atRoot = false;
  /** Too large, or not listable by cookie (two entries with one d_off): serve uncached. */
  bool uncacheable = false;
  std::vector<uint8_t> blob;
  std::vector<CachedEntry> entries;
  /** cookie (a d_off) -> index of the entry after it. */
  std::unordered_map<uint64_t, uint32_t> after;

  size_t Bytes() const;
};

using ListingRef = std::shared_ptr<const Listing>;

/** Process-wide, bounded (kMaxCacheBytes), least recently used listings evicted first. */
namespace listing_cache {

constexpr uint64_t kRacyNs = 1'000'000'000;       // a fill this close to the directory's ctime is not kept
constexpr size_t kMaxListingBytes = 16u << 20;    // one directory (about 60,000 entries)
constexpr size_t kMaxListingEntries = 100'000;
constexpr size_t kMaxCacheBytes = 64u << 20;      // all directories together
constexpr size_t kMaxSlots = 16384;               // directories known at once (listings and sightings)
constexpr uint64_t kUncacheableNs = 60'000'000'000ULL;  // how long a too-large directory is not filled again

/** The listing of (share, dev, ino) if one is stored (any age: the caller validates it). */
ListingRef Find(uint64_t shareId, uint64_t dev, uint64_t ino);

/**
 * Whether the caller should fill (dev, ino) now: the directory was listed before within
 * `windowNs` (a listing of one reply is never filled) and no other thread is filling it. True
 * claims the fill: the caller must call Store or Abandon.
 */
bool ClaimFill(uint64_t shareId, uint64_t dev, uint64_t ino, uint64_t nowNs, uint64_t windowNs);
/** Keeps a filled listing (releasing the claim), evicting the least recently used over the bound. */
void Store(ListingRef listing);
/** Releases a claim without a listing; no new claim for retryAfterNs. */
void Abandon(uint64_t shareId, uint64_t dev, uint64_t ino, uint64_t retryAfterNs);

struct Stats {
  uint64_t hits = 0, fills = 0, bytes = 0, listings = 0;
};
Stats GetStats();
void CountHit();

}  // namespace listing_cache

}  // namespace manila
