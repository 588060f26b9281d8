package dev.prestop.lab.consumer;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.springframework.stereotype.Component;

/**
 * Every finished request, in completion order. Sequence numbers start at 1 and are
 * given at completion, so a reader that asks for everything after the last number
 * it saw never misses a slow request that finishes late.
 *
 * <p>Stored column-wise in fixed chunks (about 21 bytes a record) so two million
 * records fit in a small heap.
 */
@Component
public class RecordStore {

    private static final int CHUNK = 1 << 16;

    private final int maxRecords;
    private final List<double[]> starts = new ArrayList<>();
    private final List<double[]> ends = new ArrayList<>();
    private final List<int[]> instanceIds = new ArrayList<>();
    private final List<byte[]> outcomes = new ArrayList<>();
    private final List<String> instances = new ArrayList<>();
    private final Map<String, Integer> instanceIndex = new HashMap<>();
    private final Map<String, long[]> perInstance = new LinkedHashMap<>();
    private final long[] perOutcome = new long[Outcome.values().length];
    private int size;
    private long total;

    public RecordStore(LabProperties props) {
        this.maxRecords = props.maxRecords();
    }

    public synchronized void add(double startMs, double endMs, String instance, Outcome outcome) {
        total++;
        perOutcome[outcome.ordinal()]++;
        perInstance.computeIfAbsent(instance, k -> new long[Outcome.values().length])[outcome.ordinal()]++;
        if (size >= maxRecords) {
            return;
        }
        if (size % CHUNK == 0) {
            starts.add(new double[CHUNK]);
            ends.add(new double[CHUNK]);
            instanceIds.add(new int[CHUNK]);
            outcomes.add(new byte[CHUNK]);
        }
        int chunk = size / CHUNK;
        int i = size % CHUNK;
        starts.get(chunk)[i] = startMs;
        ends.get(chunk)[i] = endMs;
        instanceIds.get(chunk)[i] = instanceIndex.computeIfAbsent(instance, k -> {
            instances.add(k);
            return instances.size() - 1;
        });
        outcomes.get(chunk)[i] = (byte) outcome.ordinal();
        size++;
    }

    /** Records with seq > after, at most limit of them, as [seq, start_ms, end_ms, instance, outcome]. */
    public synchronized Page after(long after, int limit) {
        Outcome[] values = Outcome.values();
        int from = (int) Math.max(0, Math.min(after, size));
        int to = (int) Math.min(size, (long) from + limit);
        List<Object[]> rows = new ArrayList<>(to - from);
        for (int n = from; n < to; n++) {
            int chunk = n / CHUNK;
            int i = n % CHUNK;
            rows.add(new Object[] {n + 1L, starts.get(chunk)[i], ends.get(chunk)[i],
                    instances.get(instanceIds.get(chunk)[i]), values[outcomes.get(chunk)[i]].label()});
        }
        return new Page(to, rows);
    }

    public synchronized Map<String, Object> stats() {
        Map<String, Object> byOutcome = new LinkedHashMap<>();
        for (Outcome o : Outcome.values()) {
            byOutcome.put(o.label(), perOutcome[o.ordinal()]);
        }
        Map<String, Object> byInstance = new LinkedHashMap<>();
        perInstance.forEach((instance, counts) -> {
            Map<String, Object> c = new LinkedHashMap<>();
            long sum = 0;
            for (Outcome o : Outcome.values()) {
                if (counts[o.ordinal()] > 0) {
                    c.put(o.label(), counts[o.ordinal()]);
                    sum += counts[o.ordinal()];
                }
            }
            c.put("total", sum);
            byInstance.put(instance, c);
        });
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("total", total);
        out.put("stored", size);
        out.put("byOutcome", byOutcome);
        out.put("byInstance", byInstance);
        return out;
    }

    /** next: the seq to pass as ?after= next time. */
    public record Page(long next, List<Object[]> records) {
    }
}
