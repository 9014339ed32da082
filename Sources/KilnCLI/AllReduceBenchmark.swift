import ArgumentParser
import Foundation
import Kiln
import KilnDistributed

/// `mpirun -np N kiln bench --all-reduce`: how long the ranks take to sum a message of 4 bytes to 64 MB,
/// the collective that averages gradients in data-parallel training, and the bandwidth that makes.
/// Algorithm bandwidth is bytes / time; bus bandwidth scales it by 2(N − 1)/N, the share of the message
/// each rank sends and receives in a ring all-reduce, so that it compares with the link's speed whatever N.
enum AllReduceBenchmark {
    static let sizes = [4] + (0...6).map { (1 << $0) * 1_048_576 }

    static func run(repeats: Int, json: Bool) throws {
        guard let job = MPIJob.fromEnvironment(), job.size > 1 else {
            throw ValidationError("--all-reduce measures the ranks of a job: start it with mpirun -np N kiln bench --all-reduce (N ≥ 2)")
        }
        let communicator = try MPICommunicator.start()
        defer { communicator.finish() }
        let ranks = Double(job.size)
        var rows: [(bytes: Int, seconds: Double)] = []
        for bytes in sizes {
            let values = UnsafeMutableBufferPointer<Float>.allocate(capacity: bytes / 4)
            values.initialize(repeating: 1)
            defer { values.deallocate() }
            var times: [Double] = []
            for round in 0...repeats {
                values.update(repeating: 1)
                _ = try communicator.allReduceSum([0])  // every rank starts together
                let start = ContinuousClock.now
                try communicator.allReduceSum(values)
                let elapsed = ContinuousClock.now - start
                if round > 0 { times.append(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18) }
            }
            // The slowest rank's time is the collective's: the step waits for it.
            let slowest = try communicator.allGather(times).reduce(times) { zip($0, $1).map { max($0, $1) } }
            rows.append((bytes, slowest.sorted()[slowest.count / 2]))
            guard values.allSatisfy({ $0 == Float(job.size) }) else {
                throw DataParallelError.communication("the all-reduce of \(bytes) bytes summed wrongly")
            }
        }
        guard communicator.rank == 0 else { return }
        if json {
            let records = rows.map { row in
                "{\"bytes\": \(row.bytes), \"ranks\": \(job.size), \"seconds\": \(row.seconds), "
                    + "\"algorithm_gbps\": \(Double(row.bytes) / row.seconds / 1e9), \"bus_gbps\": \(busBandwidth(row, ranks) / 1e9)}"
            }
            print("[\n  " + records.joined(separator: ",\n  ") + "\n]")
            return
        }
        print("MPI_Allreduce (sum, float32) over \(job.size) ranks, \(communicator.libraryVersion.split(separator: ",").first ?? ""); "
              + "median of \(repeats), the slowest rank's time")
        print("\n| message | time | algorithm bandwidth | bus bandwidth |\n|---:|---:|---:|---:|")
        for row in rows {
            let size = row.bytes < 1_048_576 ? "\(row.bytes) B" : "\(row.bytes / 1_048_576) MB"
            print(String(format: "| %@ | %@ | %.2f GB/s | %.2f GB/s |", size, duration(row.seconds), Double(row.bytes) / row.seconds / 1e9,
                         busBandwidth(row, ranks) / 1e9))
        }
    }

    private static func busBandwidth(_ row: (bytes: Int, seconds: Double), _ ranks: Double) -> Double {
        Double(row.bytes) / row.seconds * 2 * (ranks - 1) / ranks
    }

    private static func duration(_ seconds: Double) -> String {
        seconds < 1e-3 ? String(format: "%.1f µs", seconds * 1e6) : String(format: "%.2f ms", seconds * 1e3)
    }
}
