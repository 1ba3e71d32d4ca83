// Node.js 20 lacks Promise.withResolvers (Node 22 has it), which libp2p 2.x calls. Imported
// before libp2p: ES modules are evaluated in import order.
Promise.withResolvers ??= function withResolvers() {
    let resolve, reject;
    const promise = new this((res, rej) => ((resolve = res), (reject = rej)));
    return { promise, resolve, reject };
};
