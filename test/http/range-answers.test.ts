// Range answers of the origin's blob replies (RFC 9110 §14): an unsatisfiable range is a
// 416 that says how long the object is; a HEAD ignores Range.
import t from 'tap';
import { createHash } from 'node:crypto';
import { request } from 'undici';
import { startOrigin } from '../helpers/origin.js';

t.test('a 416 carries Content-Range: bytes */size', async (t) => {
  const origin = await startOrigin(t);
  const body = '0123456789abcdef';
  const hex = createHash('sha256').update(body).digest('hex');
  const put = await request(`${origin.url}/cas/sha256/${hex}`, { method: 'PUT', headers: { authorization: `Bearer ${origin.token}` }, body });
  await put.body.dump();
  await (await request(`${origin.url}/artifacts/r/j/f`, { method: 'PUT', headers: { authorization: `Bearer ${origin.token}` }, body })).body.dump();
  for (const path of [`/cas/sha256/${hex}`, '/artifacts/r/j/f']) {
    for (const range of ['bytes=16-20', 'bytes=-0']) {
      const res = await request(`${origin.url}${path}`, { headers: { range } });
      const text = await res.body.text();
      t.equal(res.statusCode, 416, `GET ${path} ${range}`);
      t.equal(res.headers['content-range'], 'bytes */16');
      t.equal((JSON.parse(text) as { code: string }).code, 'FC_ERR_RANGE');
      // GET is the only method with ranges (RFC 9110 §14.2): a HEAD answers as a GET without Range
      const head = await request(`${origin.url}${path}`, { method: 'HEAD', headers: { range } });
      await head.body.dump();
      t.equal(head.statusCode, 200, `HEAD ${path} ${range}`);
      t.equal(head.headers['content-length'], '16');
      t.notOk(head.headers['content-range']);
    }
  }
});
