// Times an ONNX model with ONNX Runtime (onnxruntime-node) on the CPU: one warm-up, then `runs`
// runs; prints one JSON line with the median latency. Usage:
//   node ort_bench.js MODEL.onnx BATCH THREADS RUNS
const ort = require('onnxruntime-node');

async function main() {
  const [model, batch, threads, runs] = process.argv.slice(2);
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: Number(threads),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const b = Number(batch);
  const data = new Float32Array(b * 3 * 224 * 224);
  for (let i = 0; i < data.length; ++i) data[i] = Math.sin(i) * 0.5;
  const feeds = { pixels: new ort.Tensor('float32', data, [b, 3, 224, 224]) };
  await session.run(feeds);
  const times = [];
  for (let i = 0; i < Number(runs); ++i) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  times.sort((a, b) => a - b);
  console.log(JSON.stringify({ peer: 'onnxruntime', version: require('onnxruntime-node/package.json').version,
                               seconds: times[Math.floor(times.length / 2)] }));
}
main().catch((e) => { console.error(e); process.exit(1); });
