// MOUNT version 3 protocol types (RFC 1813 section 5.1), in the RFC's own words.

/** Maximum bytes in a path name (dirpath<MNTPATHLEN>). */
export const MNTPATHLEN = 1024;
/** Maximum bytes in a name (name<MNTNAMLEN>). */
export const MNTNAMLEN = 255;
/** Maximum bytes in a V3 file handle (fhandle3<FHSIZE3>). */
export const FHSIZE3 = 64;

/** RFC 1813 section 5.1.5: mountstat3. Every member with its explicit number. */
export enum Mountstat3 {
  MNT3_OK = 0,
  MNT3ERR_PERM = 1,
  MNT3ERR_NOENT = 2,
  MNT3ERR_IO = 5,
  MNT3ERR_ACCES = 13,
  MNT3ERR_NOTDIR = 20,
  MNT3ERR_INVAL = 22,
  MNT3ERR_NAMETOOLONG = 63,
  MNT3ERR_NOTSUPP = 10004,
  MNT3ERR_SERVERFAULT = 10006,
}

/** RFC 1813 section 5.2: procedure numbers. */
export enum Mount3Proc {
  NULL = 0,
  MNT = 1,
  DUMP = 2,
  UMNT = 3,
  UMNTALL = 4,
  EXPORT = 5,
}
