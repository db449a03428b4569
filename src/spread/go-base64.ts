// Go's base64.StdEncoding.DecodeString, which yaml.v2 applies to a `!!binary` scalar.

/** Groups of four, the last one padded with `=`: all Go's standard encoding takes. */
const STD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * The bytes of `text` as Go decodes it: line breaks (\r, \n) anywhere are skipped, the padding
 * is required, and any other character, a space too, is an error (undefined).
 */
export function decodeGoBase64(text: string): Buffer | undefined {
  const data = text.replace(/[\r\n]/g, '');
  // Go ignores bits past the last whole byte (not strict mode), as Buffer.from does
  return STD_BASE64.test(data) ? Buffer.from(data, 'base64') : undefined;
}
