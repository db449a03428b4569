// A cache's configuration file: read and checked only when the command names one (--config),
// so that a cache started from flags alone does not load the YAML parser.
import { Type } from '@sinclair/typebox';
import { filePlace, loadConfigFile, parseConfig, type SettingPlace } from '../config/load.js';
import { cacheConfigSchema, type CacheConfigFile } from './config.js';

export function parseCacheConfig(text: string, file: string): CacheConfigFile {
  return parseConfig(cacheConfigSchema, text, file);
}

/** A configuration file whose upstream `cache --upstream URL` gives (flags override the file). */
const cacheFileWithoutUpstream = Type.Object({ ...cacheConfigSchema.properties, upstream: Type.Optional(cacheConfigSchema.properties.upstream) }, { additionalProperties: false });

/** Loads a cache's configuration file; `upstreamGiven`: the command line names the upstream, which the file may then leave out. */
export function loadCacheConfig(file: string): CacheConfigFile;
export function loadCacheConfig(file: string, upstreamGiven: boolean): Partial<CacheConfigFile>;
export function loadCacheConfig(file: string, upstreamGiven = false): Partial<CacheConfigFile> {
  return upstreamGiven ? loadConfigFile(cacheFileWithoutUpstream, file) : loadConfigFile(cacheConfigSchema, file);
}

/** A --config file's settings, and where in it a field is set (the line that messages name). */
export function readCacheConfigFile(file: string, upstreamGiven: boolean): { settings: Partial<CacheConfigFile>; placeOf: (path: readonly string[]) => SettingPlace } {
  return { settings: loadCacheConfig(file, upstreamGiven), placeOf: (path) => filePlace(file, path) };
}
