/*
 * Single purpose: run one real OpenSearch 2.19 node on loopback for the Python integration tests.
 *
 * It builds an org.opensearch.node.Node with the transport-netty4, lang-painless and analysis-common
 * modules as classpath plugins (no distribution, no security manager), binds HTTP and transport to
 * 127.0.0.1, waits until the cluster is at least yellow and then prints exactly one line to stdout:
 *
 *     OPENSEARCH_READY http://127.0.0.1:PORT
 *
 * Everything else (log4j, JVM warnings, library chatter) goes to stderr. SIGTERM or SIGINT, or end of
 * standard input with --exit-on-stdin-eof (the parent died), closes the node and exits 0; a node that
 * fails to start prints why to stderr and exits 1 (2 for a bad command line).
 *
 * Usage: java -cp target/classes:target/lib/* dev.cdc.testnode.OpenSearchTestNode
 *            --home DIR [--http-port N] [--exit-on-stdin-eof] [-E key=value]...
 * The tests pass e.g. -E thread_pool.write.size=1 -E thread_pool.write.queue_size=2 to provoke 429s.
 */
package dev.cdc.testnode;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.opensearch.action.admin.cluster.health.ClusterHealthResponse;
import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.settings.Settings;
import org.opensearch.common.unit.TimeValue;
import org.opensearch.core.common.transport.TransportAddress;
import org.opensearch.env.Environment;
import org.opensearch.http.HttpServerTransport;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.painless.PainlessPlugin;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

import sun.misc.Signal;

public final class OpenSearchTestNode {

    private static final List<Class<? extends Plugin>> PLUGINS =
            List.of(Netty4Plugin.class, PainlessPlugin.class, CommonAnalysisPlugin.class);

    private static final String DEFAULT_REPLICAS = "cluster.default_number_of_replicas";

    /** Node's constructor that takes classpath plugins is protected: this opens it (as MockNode does). */
    static final class ClasspathPluginNode extends Node {
        ClasspathPluginNode(Environment environment, Collection<Class<? extends Plugin>> plugins) {
            super(environment, plugins, true);
        }
    }

    public static void main(String[] args) throws IOException {
        // stdout carries only the READY line: whatever else prints to System.out lands on stderr.
        PrintStream ready = System.out;
        System.setOut(System.err);

        Path home = null;
        String httpPort = "0";
        boolean exitOnStdinEof = false;
        Settings.Builder extra = Settings.builder();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            switch (arg) {
                case "--home" -> home = Path.of(value(args, ++i, arg)).toAbsolutePath();
                case "--http-port" -> httpPort = value(args, ++i, arg);
                case "--exit-on-stdin-eof" -> exitOnStdinEof = true;
                case "-E" -> {
                    String kv = value(args, ++i, arg);
                    int eq = kv.indexOf('=');
                    if (eq <= 0) {
                        usage("-E expects key=value, got: " + kv);
                    }
                    extra.put(kv.substring(0, eq), kv.substring(eq + 1));
                }
                default -> usage("unknown argument: " + arg);
            }
        }
        if (home == null) {
            usage("--home DIR is required");
        }
        Files.createDirectories(home.resolve("config"));

        Settings settings = Settings.builder()
                .put("path.home", home.toString())
                .put("path.data", home.resolve("data").toString())
                .put("path.logs", home.resolve("logs").toString())
                .put("cluster.name", "cdc-test")
                .put("node.name", "cdc-test-node")
                .put("discovery.type", "single-node")
                .put("network.host", "127.0.0.1")
                .put("http.port", httpPort)
                .put("transport.port", "0")
                .put("cluster.routing.allocation.disk.threshold_enabled", false)
                .put(DEFAULT_REPLICAS, 0) // one node: new indices are green
                .put("node.portsfile", false)
                .put(extra.build()) // -E wins over every default above
                .build();

        CountDownLatch stop = new CountDownLatch(1);
        Signal.handle(new Signal("TERM"), signal -> stop.countDown());
        Signal.handle(new Signal("INT"), signal -> stop.countDown());
        if (exitOnStdinEof) {
            Thread watcher = new Thread(() -> {
                drain(System.in);
                stop.countDown();
            }, "stdin-eof-watcher");
            watcher.setDaemon(true);
            watcher.start();
        }
        try {
            run(settings, home, stop, ready);
        } catch (Throwable failure) {
            // the node's non-daemon threads would keep a failed JVM alive: exit, never linger
            failure.printStackTrace();
            System.exit(1);
        }
        System.exit(0);
    }

    private static void run(Settings settings, Path home, CountDownLatch stop, PrintStream ready) throws Exception {
        Environment environment =
                InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), home.resolve("config"), () -> "cdc-test-node");
        Node node = new ClasspathPluginNode(environment, PLUGINS);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> closeQuietly(node), "close-node"));

        node.start();
        ClusterHealthResponse health = node.client().admin().cluster().prepareHealth()
                .setWaitForYellowStatus()
                .setTimeout(TimeValue.timeValueSeconds(120))
                .get();
        if (health.isTimedOut()) {
            throw new IllegalStateException("cluster did not reach yellow: " + health.getStatus());
        }
        // 2.19 reads this default from the persistent cluster settings only, not from node settings.
        node.client().admin().cluster().prepareUpdateSettings()
                .setPersistentSettings(Settings.builder().put(DEFAULT_REPLICAS, settings.get(DEFAULT_REPLICAS)))
                .get();
        TransportAddress http = node.injector().getInstance(HttpServerTransport.class).boundAddress().publishAddress();
        ready.println("OPENSEARCH_READY http://" + http.getAddress() + ":" + http.getPort());
        ready.flush();

        stop.await();
        closeQuietly(node);
    }

    private static void closeQuietly(Node node) {
        try {
            node.close();
            node.awaitClose(30, TimeUnit.SECONDS);
        } catch (IOException | InterruptedException | RuntimeException e) {
            System.err.println("closing the node failed: " + e);
        }
    }

    private static void drain(InputStream in) {
        byte[] buffer = new byte[256];
        try {
            while (in.read(buffer) >= 0) {
                // discard: only the end of the stream matters
            }
        } catch (IOException e) {
            // a broken pipe is an end as well
        }
    }

    private static String value(String[] args, int i, String flag) {
        if (i >= args.length) {
            usage(flag + " expects a value");
        }
        return args[i];
    }

    private static void usage(String problem) {
        System.err.println(problem);
        System.err.println("usage: OpenSearchTestNode --home DIR [--http-port N] [--exit-on-stdin-eof] [-E key=value]...");
        System.exit(2);
    }
}
