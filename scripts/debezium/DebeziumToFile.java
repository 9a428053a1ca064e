import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.debezium.engine.ChangeEvent;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.Header;
import io.debezium.engine.format.Json;
import io.debezium.engine.format.KeyValueHeaderChangeEventFormat;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import sun.misc.Signal;

/**
 * Runs the Debezium Engine with the connector configuration in a properties file and writes
 * every record it emits to a file, one JSON line each:
 * {"topic": ..., "key": JSON text or null, "value": JSON text or null, "headers": {name: JSON text}}.
 * Each line is flushed as it is written, so a reader sees a record as soon as Debezium emits it;
 * with -Ddebezium.flush=batch, once per batch of the engine, as a sink writing in batches would.
 * SIGTERM or SIGINT closes the engine; the exit code is 0 after a clean stop, 1 when the engine failed.
 *
 * Usage: java -cp 'libs/*:classes' DebeziumToFile CONNECTOR.properties OUTPUT.jsonl
 */
public final class DebeziumToFile {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final boolean FLUSH_EACH_RECORD = !"batch".equals(System.getProperty("debezium.flush"));

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("debezium: usage: DebeziumToFile CONNECTOR.properties OUTPUT.jsonl");
            System.exit(2);
        }
        Properties config = new Properties();
        try (Reader reader = Files.newBufferedReader(Path.of(args[0]), StandardCharsets.UTF_8)) {
            config.load(reader);
        }
        BufferedWriter out = Files.newBufferedWriter(Path.of(args[1]), StandardCharsets.UTF_8);
        CountDownLatch stopped = new CountDownLatch(1);
        AtomicReference<String> failure = new AtomicReference<>();

        DebeziumEngine<ChangeEvent<String, String>> engine = DebeziumEngine
                .create(KeyValueHeaderChangeEventFormat.of(Json.class, Json.class, Json.class))
                .using(config)
                .notifying((List<ChangeEvent<String, String>> records,
                        DebeziumEngine.RecordCommitter<ChangeEvent<String, String>> committer) -> {
                    for (ChangeEvent<String, String> record : records) {
                        writeLine(out, record);
                        committer.markProcessed(record);
                    }
                    if (!FLUSH_EACH_RECORD) {
                        flush(out);
                    }
                    committer.markBatchFinished();
                })
                .using((boolean success, String message, Throwable error) -> {
                    if (!success) {
                        failure.set(message + (error == null ? "" : ": " + error));
                    }
                    stopped.countDown();
                })
                .build();

        // SIGTERM and SIGINT close the engine, which ends the wait below; the exit code is then ours, not 143.
        for (String name : new String[] {"TERM", "INT"}) {
            Signal.handle(new Signal(name), signal -> closeQuietly(engine));
        }
        ExecutorService executor = Executors.newSingleThreadExecutor();
        executor.execute(engine);
        System.err.println("debezium: engine started, writing records to " + args[1]);
        stopped.await();
        executor.shutdown();
        executor.awaitTermination(30, TimeUnit.SECONDS);
        out.close();
        if (failure.get() != null) {
            System.err.println("debezium: the engine stopped with an error: " + failure.get());
            System.exit(1);
        }
        System.err.println("debezium: engine stopped");
        System.exit(0);
    }

    private static void closeQuietly(DebeziumEngine<?> engine) {
        try {
            engine.close();
        } catch (Exception error) {
            System.err.println("debezium: closing the engine failed: " + error);
        }
    }

    /** One record as one flushed line; synchronized because the engine may call from its own threads. */
    private static synchronized void writeLine(BufferedWriter out, ChangeEvent<String, String> record)
            throws InterruptedException {
        ObjectNode line = JSON.createObjectNode();
        line.put("topic", record.destination());
        line.put("key", record.key());
        line.put("value", record.value());
        ObjectNode headers = line.putObject("headers");
        for (Header<String> header : record.<String>headers()) {
            headers.put(header.getKey(), header.getValue());
        }
        try {
            out.write(JSON.writeValueAsString(line));
            out.write('\n');
        } catch (IOException error) {
            throw new IllegalStateException("writing a record to the output file failed: " + error, error);
        }
        if (FLUSH_EACH_RECORD) {
            flush(out);
        }
    }

    private static synchronized void flush(BufferedWriter out) {
        try {
            out.flush();
        } catch (IOException error) {
            throw new IllegalStateException("writing a record to the output file failed: " + error, error);
        }
    }
}
